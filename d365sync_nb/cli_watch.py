"""``d365sync watch``: keep caches current: check versions on a schedule, sync, notify.

``--once`` (cron, CI) checks each environment once and exits 0 (up to date or synced), 1 (a
failure) or 130 (cancelled). ``--every``/``--cron``/a profile's ``schedule`` run until SIGTERM
or SIGINT, which cancel a running sync (recorded cancelled) and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from d365sync_nb.arguments import bounded_int, non_negative_float
from d365sync_nb.automation import (
    NotifyTarget,
    Schedule,
    Watcher,
    WatchTarget,
    event_text,
    exit_code,
    parse_duration,
    parse_targets,
)
from d365sync_nb.automation.schedule import parse_schedule_text
from d365sync_nb.config import load_profiles
from d365sync_nb.connection import MAX_CONCURRENCY, SCALES, Connection, connect
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.models import SyncStrategy
from d365sync_nb.operations import watch as spec

MAX_PARALLEL = 2


def add_commands(sub: Any) -> None:
    watch = sub.add_parser(
        "watch", help="check the environment's version on a schedule; sync and notify when due"
    )
    where = watch.add_mutually_exclusive_group()
    where.add_argument(
        "--base-url", help="environment root, e.g. https://x.operations.dynamics.com"
    )
    where.add_argument(
        "--profile",
        action="append",
        metavar="NAME",
        help="a named profile (repeat for several environments, each on its own schedule)",
    )
    where.add_argument("--demo", action="store_true", help="start the embedded emulator")
    watch.add_argument("--scale", choices=SCALES, default="small", help="dataset size of --demo")
    watch.add_argument(
        "--latency-ms", type=non_negative_float, default=None, help="--demo latency per request"
    )
    watch.add_argument("--cache-dir", help="cache directory (default: the user cache dir)")
    watch.add_argument(
        "--concurrency", type=bounded_int(1, MAX_CONCURRENCY), default=None,
        help="exactly N requests in flight (default: adaptive)",
    )  # fmt: skip
    when = watch.add_mutually_exclusive_group()
    for arg in spec.SCHEDULE:
        arg.add_to(when)
    for arg in spec.OPTIONS:
        arg.add_to(watch)
    spec.add_notify(watch)
    watch.add_argument(
        "--max-parallel", type=bounded_int(1, 64), default=MAX_PARALLEL,
        help=f"syncs running at once across environments (default {MAX_PARALLEL})",
    )  # fmt: skip
    watch.add_argument("--json", action="store_true", help="one JSON line per event on stdout")


def _watch(args: argparse.Namespace) -> int:
    strategy = SyncStrategy.parse(args.strategy)
    retry_base = parse_duration(args.retry_after)
    targets_text = list(args.notify or [])
    flag_schedule = (
        Schedule.parse(every=args.every, cron=args.cron) if (args.every or args.cron) else None
    )
    if args.latency_ms is not None and not args.demo:
        raise ConfigurationError("--latency-ms only applies with --demo")
    extra = parse_targets(targets_text)
    if any(t.kind == "jupyter" for t in extra):
        raise ConfigurationError("--notify jupyter works in a notebook (%d365sync watch) only")
    conns: list[Connection] = []
    try:
        targets = [
            _target(conn, entry, flag_schedule, strategy, extra, once=args.once)
            for conn, entry in _connections(args, conns)
        ]
        watcher = Watcher(
            targets,
            max_parallel=args.max_parallel,
            retry_base=retry_base,
            on_event=_printer(args.json),
        )
        return asyncio.run(_run(watcher, once=args.once))
    finally:
        for conn in conns:
            conn.close()


def _connections(
    args: argparse.Namespace, opened: list[Connection]
) -> list[tuple[Connection, dict[str, Any]]]:
    """The watched connections (appended to ``opened`` as they open) and their profiles."""
    common = {"cache_dir": args.cache_dir, "concurrency": args.concurrency, "repair_cache": True}
    if args.profile:
        if len(set(args.profile)) != len(args.profile):
            raise ConfigurationError("A profile is named twice: give each --profile once")
        profiles = load_profiles()
        found = []
        for name in args.profile:
            conn = connect(profile=name, **common)
            opened.append(conn)
            found.append((conn, dict(profiles.get(name) or {})))
        return found
    conn = connect(
        base_url=args.base_url,
        demo=args.demo,
        scale=args.scale,
        latency_ms=args.latency_ms,
        **common,
    )
    opened.append(conn)
    return [(conn, {})]


def _target(
    conn: Connection,
    profile: dict[str, Any],
    schedule: Schedule | None,
    strategy: SyncStrategy,
    extra: list[NotifyTarget],
    *,
    once: bool,
) -> WatchTarget:
    name = conn.settings.profile
    if schedule is None and profile.get("schedule"):
        schedule = parse_schedule_text(str(profile["schedule"]), f"profile {name!r}")
    if schedule is None:
        if not once:
            where = f" or a schedule in profile {name!r}" if name else ""
            raise ConfigurationError(f"Give --every DURATION, --cron EXPR{where}, or --once")
        schedule = Schedule(every=60.0)  # unused: --once checks at once
    notify = list(extra)
    listed = profile.get("notify") or []
    if not isinstance(listed, list):
        raise ConfigurationError(f"Profile {name!r}: notify must be a list of targets")
    for text in listed:
        target = NotifyTarget.parse(str(text))
        if target.kind == "jupyter":
            continue  # a notebook's target: a command line has no notebook
        notify.append(target)
    return WatchTarget(conn.manager, schedule, strategy, notify, name=name)


def _printer(as_json: bool) -> Any:
    def emit(event: dict[str, Any]) -> None:
        print(json.dumps(event) if as_json else event_text(event), flush=True)

    return emit


async def _run(watcher: Watcher, *, once: bool) -> int:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not watcher.stopping:
            running = [t.running_session_id for t in watcher.targets if t.running_session_id]
            what = f"cancelling session {', '.join(running)}" if running else "between checks"
            print(f"d365sync watch: stopping ({what})", file=sys.stderr, flush=True)
        watcher.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    try:
        records = await watcher.run(once=once)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return exit_code(records) if once else 0


COMMANDS = {"watch": _watch}
