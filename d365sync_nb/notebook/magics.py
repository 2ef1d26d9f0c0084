"""The ``%d365sync`` line magic: parse the line, route it to ``commands.<name>.run``.

Errors are one red line (IPython's ``UsageError``); ``--debug`` shows the traceback instead.
Settings live in :class:`~d365sync_nb.notebook.config.D365Sync` (``%config D365Sync``).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import textwrap
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from d365sync_nb.errors import D365SyncError
from d365sync_nb.notebook.commands import MODULES, Command

log = logging.getLogger(__name__)

PROG = "%d365sync"
COMMANDS: dict[str, Command] = {command.NAME: command for command in MODULES}


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


def parser_for(command: Command) -> _Parser:
    """The argument parser of one subcommand (its own options plus ``--debug``)."""
    parser = _Parser(prog=f"{PROG} {command.NAME}", description=command.SUMMARY, add_help=True)
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    command.add_arguments(parser)
    return parser


def help_text() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"{PROG} SUBCOMMAND [options]  -- sync D365 F&O metadata into the local cache",
        "",
        "Subcommands:",
        *(f"  {name:<{width}}  {cmd.SUMMARY}" for name, cmd in COMMANDS.items()),
        f"  {'help':<{width}}  this list; '{PROG} help CMD' or '{PROG} CMD -h' for options",
        "",
        "Every subcommand accepts --debug (full traceback on errors).",
        *textwrap.wrap(
            "from d365sync_nb.notebook import " + ", ".join(python_names()),
            width=88,
            initial_indent="Python: ",
            subsequent_indent="        ",
        ),
        "Config: %config D365Sync  (default_strategy, cache_dir, progress_interval, display, ...)",
    ]
    return "\n".join(lines)


def python_names() -> list[str]:
    """The Python function of each subcommand, in help order."""
    names = []
    for command in COMMANDS.values():
        function = getattr(command, "function", None) or getattr(command, command.NAME, None)
        names.append(function.__name__ if function is not None else command.NAME)
    return names


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, D365SyncError | KeyboardInterrupt):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text} (add --debug for the traceback)"


@magics_class
class D365SyncMagics(Magics):
    """``%d365sync``; its settings are ``%config D365Sync``."""

    @line_magic
    def d365sync(self, line: str = "") -> Any:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"{PROG}: cannot parse the line ({exc})") from None
        if not words or words[0] in ("help", "-h", "--help"):
            topic = words[1] if len(words) > 1 else None
            if topic in COMMANDS:
                print(parser_for(COMMANDS[topic]).format_help())
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
            args = parser_for(command).parse_args(rest)
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


D365SyncMagics.d365sync.__doc__ = help_text()
