"""The ``%d365sync`` line magic: a router from subcommand to a small function of :mod:`api`.

Errors are one red line (IPython's ``UsageError``); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from traitlets import Enum, Float, Int, Unicode, observe, validate

from d365sync_nb.errors import D365SyncError
from d365sync_nb.models import STRATEGY_DESCRIPTIONS, SyncStatus, SyncStrategy
from d365sync_nb.notebook import api
from d365sync_nb.notebook.context import context
from d365sync_nb.notebook.frontend import DISPLAY_MODES

log = logging.getLogger(__name__)

PROG = "%d365sync"


class _HelpShown(Exception):
    """``-h`` printed a subcommand's help."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {PROG} help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            raise UsageError((message or f"{self.prog}: invalid arguments").strip())
        raise _HelpShown


def _parser(name: str, description: str) -> _Parser:
    parser = _Parser(prog=f"{PROG} {name}", description=description, add_help=True)
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value:g}")
    return value


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    build: Callable[[_Parser], None]
    run: Callable[[argparse.Namespace], Any]

    def parser(self) -> _Parser:
        parser = _parser(self.name, self.summary)
        self.build(parser)
        return parser


# -- subcommands ----------------------------------------------------------------------------


def _connect_args(p: _Parser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--profile", help="named profile from the profiles file")
    where.add_argument(
        "--base-url", help="environment root, e.g. https://x.operations.dynamics.com"
    )
    where.add_argument("--demo", action="store_true", help="start the embedded emulator")
    p.add_argument("--scale", choices=["small", "realistic"], help="demo dataset size")
    p.add_argument("--latency-ms", type=_non_negative_float, help="demo latency per request")
    p.add_argument("--cache-dir", help="cache directory (default: D365Sync.cache_dir)")


def _connect(a: argparse.Namespace) -> None:
    api.connect(
        profile=a.profile,
        base_url=a.base_url,
        demo=a.demo,
        scale=a.scale,
        latency_ms=a.latency_ms,
        cache_dir=a.cache_dir,
    )


def _start_args(p: _Parser) -> None:
    choices = "; ".join(f"{s.value}: {d}" for s, d in STRATEGY_DESCRIPTIONS.items())
    p.add_argument("--strategy", help=f"default D365Sync.default_strategy; one of: {choices}")
    p.add_argument("--version", help="global version id (default: detect it)")
    p.add_argument("--force", action="store_true", help="sync even when already up to date")
    p.add_argument("--wait", action="store_true", help="block until the session ends")


def _start(a: argparse.Namespace) -> None:
    api.start(a.strategy, a.version, force=a.force, wait=a.wait)


def _progress(a: argparse.Namespace) -> None:
    api.progress(a.session_id, wait=a.wait)


def _cancel(a: argparse.Namespace) -> None:
    api.cancel(a.session_id)


def _id_arg(p: _Parser, what: str = "session id or unique prefix (default: the latest)") -> None:
    p.add_argument("session_id", nargs="?", help=what)


def _progress_args(p: _Parser) -> None:
    _id_arg(p)
    p.add_argument("--wait", action="store_true", help="follow the session until it ends")


def _history_args(p: _Parser) -> None:
    p.add_argument("--limit", type=_positive_int, default=None, help="sessions to show")
    p.add_argument("--status", choices=[s.value for s in SyncStatus], help="only this status")


def _search_args(p: _Parser) -> None:
    p.add_argument("text", nargs="+", help="words to look for")
    p.add_argument("--limit", type=_positive_int, default=20, help="hits to show")


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command(
            "connect",
            "connect to --profile NAME, --base-url URL, or --demo (the embedded emulator)",
            _connect_args,
            _connect,
        ),
        Command(
            "start",
            "start a sync session and show its live panel (--wait blocks until it ends)",
            _start_args,
            _start,
        ),
        Command(
            "progress",
            "show a session's progress or final state (--wait follows it to the end)",
            _progress_args,
            _progress,
        ),
        Command(
            "cancel",
            "cancel a running session (the latest running one when no id)",
            lambda p: _id_arg(p, "session id or unique prefix (default: the running one)"),
            _cancel,
        ),
        Command(
            "sessions", "running sessions as a DataFrame", lambda p: None, lambda a: api.sessions()
        ),
        Command(
            "history",
            "recorded sessions as a DataFrame (--limit N, --status S)",
            _history_args,
            lambda a: api.history(a.limit, a.status),
        ),
        Command(
            "phases",
            "one row per phase of a session as a DataFrame",
            _id_arg,
            lambda a: api.phases(a.session_id),
        ),
        Command(
            "timeline",
            "phase timeline chart (Gantt) of a session",
            _id_arg,
            lambda a: api.timeline(a.session_id),
        ),
        Command(
            "search",
            "search the cached metadata (entities, properties, enumerations, labels)",
            _search_args,
            lambda a: api.search(" ".join(a.text), a.limit),
        ),
        Command(
            "panel",
            "dashboard: running sessions with live bars, plus recent history",
            lambda p: None,
            lambda a: api.panel(),
        ),
    )
}


def help_text() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"{PROG} SUBCOMMAND [options]  -- sync D365 F&O metadata into the local cache",
        "",
        "Subcommands:",
        *(f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()),
        f"  {'help':<{width}}  this list; '{PROG} help CMD' or '{PROG} CMD -h' for options",
        "",
        "Every subcommand accepts --debug (full traceback on errors).",
        "Python: from d365sync_nb.notebook import connect, start, progress, cancel, sessions,",
        "        history, phases, timeline, search, panel",
        "Config: %config D365Sync  (default_strategy, cache_dir, throttle_interval, display, ...)",
    ]
    return "\n".join(lines)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, D365SyncError | KeyboardInterrupt):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text} (add --debug for the traceback)"


@magics_class
class D365Sync(Magics):
    """``%d365sync`` magics; configure with ``%config D365Sync.<trait> = <value>``."""

    default_strategy = Unicode(
        "full", help="strategy used by start when --strategy is not given"
    ).tag(config=True)
    cache_dir = Unicode(
        None, allow_none=True, help="cache directory used by connect when --cache-dir is not given"
    ).tag(config=True)
    throttle_interval = Float(
        0.1, help="seconds between progress repaints (phase transitions always repaint)"
    ).tag(config=True)
    display = Enum(
        DISPLAY_MODES,
        default_value="auto",
        help="'widget' panel, 'text', or 'auto' (widgets when the frontend renders them)",
    ).tag(config=True)
    demo_scale = Enum(("small", "realistic"), default_value="small", help="--demo dataset").tag(
        config=True
    )
    demo_latency_ms = Float(20.0, help="--demo latency per request, in milliseconds").tag(
        config=True
    )
    history_limit = Int(20, help="sessions shown by history without --limit").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._sync_options()

    @validate("default_strategy")
    def _check_strategy(self, proposal: Any) -> str:
        try:
            return SyncStrategy.parse(proposal["value"]).value
        except D365SyncError as exc:
            from traitlets import TraitError

            raise TraitError(str(exc)) from None

    @validate("throttle_interval")
    def _check_throttle(self, proposal: Any) -> float:
        from traitlets import TraitError

        if proposal["value"] < 0:
            raise TraitError("throttle_interval must be 0 or more")
        return float(proposal["value"])

    @observe(
        "default_strategy",
        "cache_dir",
        "throttle_interval",
        "display",
        "demo_scale",
        "demo_latency_ms",
        "history_limit",
    )
    def _on_change(self, change: Any) -> None:
        self._sync_options()

    def _sync_options(self) -> None:
        o = context.options
        o.default_strategy = self.default_strategy
        o.cache_dir = self.cache_dir
        o.throttle_interval = self.throttle_interval
        o.display = self.display
        o.demo_scale = self.demo_scale
        o.demo_latency_ms = self.demo_latency_ms
        o.history_limit = self.history_limit

    @line_magic
    def d365sync(self, line: str = "") -> Any:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"{PROG}: cannot parse the line ({exc})") from None
        if not words or words[0] in ("help", "-h", "--help"):
            topic = words[1] if len(words) > 1 else None
            if topic in COMMANDS:
                print(COMMANDS[topic].parser().format_help())
            elif topic:
                raise UsageError(f"Unknown subcommand {topic!r}; see {PROG} help")
            else:
                print(help_text())
            return None
        name, rest = words[0], words[1:]
        command = COMMANDS.get(name)
        if command is None:
            raise UsageError(
                f"Unknown subcommand {name!r}; one of: {', '.join(COMMANDS)} (see {PROG} help)"
            )
        try:
            args = command.parser().parse_args(rest)
        except _HelpShown:
            return None
        try:
            return command.run(args)
        except UsageError:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if args.debug or (isinstance(exc, KeyboardInterrupt) and not str(exc)):
                raise
            log.debug("%s %s failed", PROG, name, exc_info=True)
            raise UsageError(_one_line(exc)) from None


D365Sync.d365sync.__doc__ = help_text()
