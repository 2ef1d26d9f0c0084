"""The ``d365sync`` command: emulator, sync, history, requests, diagnose, compare, search, demo
(and mcp); the metadata explorer's commands are in :mod:`d365sync_nb.cli_explorer`.

Bad input is one line on stderr and exit code 2 (a usage error: argparse's and the core's
ConfigurationError alike); an operation that failed (an unknown session, the service) exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from d365sync_nb import cli_explorer, cli_watch, diagnostics, render
from d365sync_nb.arguments import bounded_int, non_negative_float, probability
from d365sync_nb.connection import (
    Connection,
    add_connection_arguments,
    connect,
    connect_from_args,
)
from d365sync_nb.errors import ConfigurationError, D365SyncError
from d365sync_nb.models import (
    PHASES,
    STRATEGY_DESCRIPTIONS,
    SyncSession,
    SyncStatus,
    SyncStrategy,
)

HEARTBEAT_SECONDS = 10.0  # off a terminal (CI logs), a status line at least this often
EXIT_CODES = {SyncStatus.COMPLETED: 0, SyncStatus.FAILED: 1, SyncStatus.CANCELLED: 130}
MAX_LIMIT = 1000
# The request log's columns (``manager.get_request_log``): all of them in --json and --csv, the
# ones a terminal has room for in the text table.
REQUEST_COLUMNS = (
    "seq", "started_at", "phase", "endpoint", "status", "error", "attempt", "latency_ms",
    "bytes", "retry_cause", "request_id", "activity_id",
)  # fmt: skip
REQUEST_TABLE_COLUMNS = (
    "seq", "time", "phase", "endpoint", "status", "error", "attempt", "ms", "bytes", "retry",
    "activity_id",
)  # fmt: skip
SESSION_ID_HELP = "session id or a unique prefix of 4+ characters (default: the latest session)"
DATE_HELP = "a date or time like 2026-11-30 or 2026-11-30T14:00 (UTC unless it has an offset)"


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``d365sync CMD: error: ...``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# The emulator's number flags: (flag, type with its range, default, help).
EMULATOR_FLAGS: tuple[tuple[str, Any, Any, str], ...] = (
    ("--port", bounded_int(0, 65535), 0, "0 (default): any free port"),
    ("--latency-ms", non_negative_float, 0.0, "added to every answer"),
    ("--max-concurrency", bounded_int(1, 10_000), None,
     "answer 429 + Retry-After beyond this many requests in flight"),
    ("--retry-after", non_negative_float, 1.0, "seconds in the Retry-After of a 429 (default 1)"),
    ("--fault-rate", probability, 0.0,
     "share of requests that fail (half 503, half a dropped connection), 0 to 1"),
    ("--page-size", bounded_int(1, 100_000), None, "page collections with @odata.nextLink"),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="d365sync", description="Sync D365 F&O metadata into a local cache.")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logs (e.g. concurrency)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    emu = sub.add_parser("emulator", help="serve the embedded D365 metadata emulator")
    for flag, kind, default, text in EMULATOR_FLAGS:
        emu.add_argument(flag, type=kind, default=default, help=text)
    emu.add_argument("--scale", default="small", choices=["small", "realistic"])
    emu.add_argument(
        "--dataset-version",
        type=int,
        default=1,
        choices=(1, 2),
        help="which release of the emulated environment to serve (2: the next release, with "
        "entities, fields, enumerations and members added, removed and changed)",
    )
    emu.add_argument(
        "--release-after",
        type=non_negative_float,
        metavar="SECONDS",
        default=None,
        help="move to the next release this many seconds after starting (an upgrade while it "
        "runs; POST /_emulator/release does it at once)",
    )

    sync = sub.add_parser("sync", help="run one sync session with live progress")
    add_connection_arguments(sync, scale_default="small")
    strategies = "; ".join(f"{s.value}: {d}" for s, d in STRATEGY_DESCRIPTIONS.items())
    sync.add_argument("--strategy", default="full", help=f"one of: {strategies}")
    sync.add_argument("--version", dest="global_version_id", default=None)
    sync.add_argument("--force", action="store_true", help="sync even when up to date")
    sync.add_argument("--json", action="store_true", help="end with one JSON line on stdout")

    hist = sub.add_parser("history", help="recorded sync sessions, newest first")
    add_connection_arguments(hist, scale_default="small")
    hist.add_argument(
        "--limit",
        type=bounded_int(1, MAX_LIMIT),
        default=20,
        help=f"sessions to show, 1 to {MAX_LIMIT} (default 20)",
    )
    hist.add_argument(
        "--status", help="only this status: " + ", ".join(s.value for s in SyncStatus)
    )
    hist.add_argument(
        "--strategy", help="only this strategy: " + ", ".join(s.value for s in SyncStrategy)
    )
    hist.add_argument(
        "--since", metavar="DATE", help=f"only sessions started at or after {DATE_HELP}"
    )
    hist.add_argument("--until", metavar="DATE", help=f"only sessions started before {DATE_HELP}")
    hist.add_argument(
        "--version",
        dest="global_version_id",
        metavar="ID",
        help="only sessions of this global version id",
    )
    hist.add_argument(
        "--checks", action="store_true", help="the watch's version checks instead of sessions"
    )
    hist.add_argument("--json", action="store_true", help="a JSON list of the sessions")

    reqs = sub.add_parser("requests", help="a session's request log, one row per attempt")
    reqs.add_argument("session", nargs="?", metavar="ID", help=SESSION_ID_HELP)
    add_connection_arguments(reqs, scale_default="small")
    reqs.add_argument(
        "--status",
        help="only attempts with this answer: a code (429), a class (5xx), 'error' (no usable "
        "answer) or 'retried'",
    )
    reqs.add_argument("--phase", help="only this phase: " + ", ".join(p.value for p in PHASES))
    output = reqs.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="a JSON list, every column")
    output.add_argument("--csv", action="store_true", help="CSV with a header row, every column")

    diag = sub.add_parser("diagnose", help="why a session was slow or failed: verdict, advice")
    diag.add_argument("session", nargs="?", metavar="ID", help=SESSION_ID_HELP)
    add_connection_arguments(diag, scale_default="small")
    diag.add_argument(
        "--history",
        action="store_true",
        help="when syncs of this environment go best: per hour of day, from the recorded sessions",
    )
    diag.add_argument("--json", action="store_true", help="the diagnosis as one JSON object")

    comp = sub.add_parser("compare", help="two sessions side by side, phase by phase")
    comp.add_argument("a", metavar="A", help="the first session: an id or a unique prefix")
    comp.add_argument("b", metavar="B", help="the second session: an id or a unique prefix")
    add_connection_arguments(comp, scale_default="small")
    comp.add_argument("--json", action="store_true", help='{"a": id, "b": id, "phases": [...]}')

    search = sub.add_parser("search", help="search the cached metadata")
    search.add_argument("text")
    add_connection_arguments(search, scale_default="small")
    search.add_argument(
        "--limit", type=bounded_int(1, MAX_LIMIT), default=20, help=f"1 to {MAX_LIMIT}"
    )
    search.add_argument("--json", action="store_true")

    cli_explorer.add_commands(sub)
    cli_watch.add_commands(sub)

    demo = sub.add_parser("demo", help="emulator + full sync + summary")
    demo.add_argument("--scale", default="small", choices=["small", "realistic"])
    demo.add_argument("--latency-ms", type=non_negative_float, default=20.0)
    demo.add_argument("--cache-dir")
    demo.add_argument("--strategy", default="full")

    mcp = sub.add_parser("mcp", help="serve the sync and metadata tools over MCP (stdio)")
    add_connection_arguments(mcp, scale_default="small")
    return parser


def session_json(session: SyncSession) -> dict[str, Any]:
    """The ``--json`` result object."""
    return {
        "session_id": session.session_id,
        "status": session.status.value,
        "strategy": session.strategy.value,
        "global_version_id": session.global_version_id,
        "duration_seconds": session.duration_seconds,
        "counts": {key: session.counts.get(key, 0) for key, _ in render.SUMMARY_COUNTS},
        "phases": {
            p.phase.value: {
                "status": p.status.value,
                "items_processed": p.items_processed,
                "items_total": p.items_total,
                "seconds": p.seconds,
                "note": p.note,
            }
            for p in session.phases.values()
        },
        "error": session.error,
        "message": session.message,
        "requests": session.requests,
        "http": session.http.model_dump(mode="json"),
    }


async def run_sync(
    conn: Connection,
    strategy: str,
    version: str | None,
    *,
    force: bool,
    as_json: bool,
) -> int:
    manager = conn.manager
    result = await manager.start(version, strategy, initiated_by="cli", force=force)
    if result.session_id is None:
        print(result.message, file=sys.stderr)
        if as_json:
            print(json.dumps({**result.to_dict(), "status": "up_to_date", "error": None}))
        return 0
    session_id = result.session_id
    print(f"{result.message} (session {session_id})", file=sys.stderr)
    progress = render.ProgressPrinter(sys.stderr, heartbeat=HEARTBEAT_SECONDS)
    manager.add_progress_callback(session_id, progress)
    loop = asyncio.get_running_loop()
    cancel_requested = False
    pending: list[asyncio.Future[bool]] = []

    def on_interrupt() -> None:
        nonlocal cancel_requested
        if not cancel_requested:
            cancel_requested = True
            print("\nCancelling...", file=sys.stderr)
            pending.append(asyncio.ensure_future(manager.cancel_sync_session(session_id)))

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, on_interrupt)
    except (NotImplementedError, RuntimeError):  # not the main thread, or not POSIX
        pass
    try:
        session = await manager.wait(session_id)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        progress.close()
    progress(session)  # the phases not printed yet, then the outcome
    if as_json:
        print(json.dumps(session_json(session)))
    return EXIT_CODES.get(session.status, 1)


def _history(args: argparse.Namespace) -> int:
    if args.checks:
        return _checks(args)
    with connect_from_args(args) as conn:
        sessions = conn.manager.get_session_history(
            limit=args.limit,
            status=args.status,
            strategy=args.strategy,
            since=args.since,
            until=args.until,
            version=args.global_version_id,
        )
        if args.json:
            print(json.dumps([s.to_dict() for s in sessions]))
        else:
            rows = [
                {
                    "session_id": s.session_id,
                    "started_at": s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                    "strategy": s.strategy.value,
                    "status": s.status.value,
                    "version": s.global_version_id,
                    "seconds": s.duration_seconds,
                    "requests": s.http.requests,
                    "labels": s.counts.get("labels"),
                    "error": s.error,
                }
                for s in sessions
            ]
            print(render.table(rows))
    return 0


CHECK_COLUMNS = ("checked_at", "action", "version", "application", "session_id", "notified",
                 "reason")  # fmt: skip


def _checks(args: argparse.Namespace) -> int:
    """``history --checks``: the watch's version checks, newest first."""
    with connect_from_args(args) as conn:
        checks = conn.manager.store.checks.load(limit=args.limit, since=_since(args.since))
        if args.json:
            print(json.dumps([c.to_dict() for c in checks]))
            return 0
        rows = [
            {
                "checked_at": c.checked_at.strftime("%Y-%m-%d %H:%M:%S"),
                "action": c.action.value,
                "version": c.global_version_id,
                "application": c.application_version,
                "session_id": c.session_id,
                "notified": f"{c.notified}"
                + (f" ({c.notify_failed} failed)" if c.notify_failed else ""),
                "reason": c.error or c.reason,
            }
            for c in checks
        ]
        print(render.table(rows, CHECK_COLUMNS))
    return 0


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(f"--since must be {DATE_HELP}, not {text[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _requests(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        manager = conn.manager
        session_id = manager.find_session_id(args.session)
        rows = manager.get_request_log(session_id, status=args.status, phase=args.phase)
        if args.json:
            print(json.dumps(rows))
        elif args.csv:
            columns = list(rows[0]) if rows else list(REQUEST_COLUMNS)
            writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            total = manager.get_sync_session(session_id).http.requests
            print(f"Session {session_id}: {len(rows):,} of {total:,} attempts", file=sys.stderr)
            print(render.table([_request_cells(row) for row in rows], REQUEST_TABLE_COLUMNS))
    return 0


def _request_cells(row: dict[str, Any]) -> dict[str, Any]:
    """A request-log row as the text table shows it (the time of day, short headings)."""
    started = row["started_at"] or ""
    return {
        **row,
        "time": started[11:23] if "T" in started else started,
        "ms": row["latency_ms"],
        "retry": row["retry_cause"],
    }


def _diagnose(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        manager = conn.manager
        if args.history:
            if args.session:
                raise ConfigurationError("--history reads every session: give no session id")
            advice = diagnostics.sync_windows(manager.get_session_history(limit=MAX_LIMIT))
            print(json.dumps(advice.to_dict()) if args.json else str(advice))
            return 0
        diagnosis = diagnostics.diagnose_session(manager, manager.find_session_id(args.session))
        print(json.dumps(diagnosis.to_dict()) if args.json else str(diagnosis))
    return 0


def _compare(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        manager = conn.manager
        a = manager.get_sync_session(manager.find_session_id(args.a))
        b = manager.get_sync_session(manager.find_session_id(args.b))
        rows = diagnostics.compare(a, b)
        if args.json:
            print(json.dumps({"a": a.session_id, "b": b.session_id, "phases": rows}))
        else:
            print(compare_text(a, b, rows))
    return 0


def compare_text(a: SyncSession, b: SyncSession, rows: list[dict[str, Any]]) -> str:
    """Who A and B are, then one line per phase and a total line: each figure as ``A → B``,
    with the ratio B/A of seconds and requests."""
    heads = [
        f"{name}: {s.session_id}  {s.strategy.value}  {s.status.value}  "
        f"{render.fmt_seconds(s.duration_seconds)}  {s.http.requests:,} requests"
        for name, s in (("A", a), ("B", b))
    ]
    cells = [
        _compare_cells(
            r["phase"],
            {key: (r[f"a_{key}"], r[f"b_{key}"]) for key in COMPARED},
            r["seconds_ratio"],
            r["requests_ratio"],
        )
        for r in rows
    ]
    totals = {
        "status": (a.status.value, b.status.value),
        "seconds": (a.duration_seconds, b.duration_seconds),
        "items": (sum(r["a_items"] for r in rows), sum(r["b_items"] for r in rows)),
        "requests": (a.http.requests, b.http.requests),
        "retries": (a.http.retries, b.http.retries),
        "throttled": (a.http.throttled, b.http.throttled),
    }
    cells.append(
        _compare_cells(
            "total",
            totals,
            _ratio(b.duration_seconds, a.duration_seconds),
            _ratio(b.http.requests, a.http.requests),
        )
    )
    return "\n".join([*heads, "", render.table(cells)])


COMPARED = ("status", "seconds", "items", "requests", "retries", "throttled")


def _compare_cells(
    phase: str,
    pairs: dict[str, tuple[Any, Any]],
    seconds_ratio: float | None,
    requests_ratio: float | None,
) -> dict[str, str]:
    def pair(key: str) -> str:
        left, right = (_figure(value) for value in pairs[key])
        return left if left == right and key == "status" else f"{left} → {right}"

    return {
        "phase": phase,
        "status A → B": pair("status"),
        "seconds": pair("seconds"),
        "s B/A": _figure(seconds_ratio),
        "items": pair("items"),
        "requests": pair("requests"),
        "req B/A": _figure(requests_ratio),
        "retries": pair("retries"),
        "429": pair("throttled"),
    }


def _figure(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(b: float, a: float) -> float | None:
    return round(b / a, 2) if a else None


def _search(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        hits = conn.manager.search(args.text, limit=args.limit)
        print(json.dumps(hits) if args.json else render.table(hits))
    return 0


def _sync(args: argparse.Namespace) -> int:
    SyncStrategy.parse(args.strategy)  # a typo fails before anything is opened or written
    conn = connect_from_args(args, repair_cache=True)
    _say_cache_notice(conn)
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)  # a realistic sync: 13 full collections -> 0, -5% time
    try:
        return asyncio.run(
            run_sync(
                conn, args.strategy, args.global_version_id, force=args.force, as_json=args.json
            )
        )
    finally:
        gc.set_threshold(*thresholds)
        conn.close()


def _demo(args: argparse.Namespace) -> int:
    SyncStrategy.parse(args.strategy)
    print(f"Starting the embedded D365 emulator ({args.scale} dataset)...", file=sys.stderr)
    conn = connect(
        demo=True,
        scale=args.scale,
        latency_ms=args.latency_ms,
        cache_dir=args.cache_dir,
        repair_cache=True,
    )
    _say_cache_notice(conn)
    try:
        print(
            f"Emulator at {conn.settings.base_url}; cache {conn.manager.store.path}",
            file=sys.stderr,
        )
        code = asyncio.run(run_sync(conn, args.strategy, None, force=True, as_json=False))
        summary = conn.manager.cache_summary()
        print(
            render.table(
                [
                    {
                        "version": v["global_version_id"],
                        "modules": v["modules"],
                        "synced_at": v["synced_at"],
                        **v["counts"],
                    }
                    for v in summary["versions"]
                ],
                [
                    "version",
                    "modules",
                    "data_entities",
                    "public_entities",
                    "properties",
                    "actions",
                    "enumerations",
                    "labels",
                    "labels_missing",
                    "labels_empty",
                ],
            )
        )
        hits = conn.manager.search("customer", limit=5)
        if hits:
            print(
                "\nSearch 'customer':\n" + render.table(hits, ["kind", "name", "label", "parent"])
            )
        return code
    finally:
        conn.close()


def _emulator(args: argparse.Namespace) -> int:
    from d365sync_nb.emulator import EmulatorError, EmulatorOptionError

    try:
        return _serve_emulator(args)
    except EmulatorOptionError as exc:
        raise ConfigurationError(str(exc)) from None
    except EmulatorError as exc:  # e.g. its port is busy
        raise D365SyncError(str(exc)) from None


def _serve_emulator(args: argparse.Namespace) -> int:
    from d365sync_nb.emulator import EmulatorOptions, serve

    options = EmulatorOptions(
        scale=args.scale,
        version=args.dataset_version,
        latency_ms=args.latency_ms,
        max_concurrency=args.max_concurrency,
        retry_after=args.retry_after,
        fault_rate=args.fault_rate,
        page_size=args.page_size,
        release_after=args.release_after,
    )

    def ready(url: str) -> None:
        print(url, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        serve(options, port=args.port, on_ready=ready)
    return 0


def _mcp(args: argparse.Namespace) -> int:
    from d365sync_nb import mcp_server
    from d365sync_nb.connection import registry

    mcp_server.check_sdk()  # before an emulator starts
    registry.set_open_options(cache_dir=args.cache_dir, concurrency=args.concurrency)
    conn = connect_from_args(args, repair_cache=True)
    _say_cache_notice(conn)
    try:
        mcp_server.serve_stdio(conn, debug=args.debug)
    finally:
        conn.close()
    return 0


COMMANDS = {
    "emulator": _emulator,
    "sync": _sync,
    "history": _history,
    "requests": _requests,
    "diagnose": _diagnose,
    "compare": _compare,
    "search": _search,
    "demo": _demo,
    "mcp": _mcp,
    **cli_explorer.COMMANDS,
    **cli_watch.COMMANDS,
}


def _say_cache_notice(conn: Connection) -> None:
    """Tell the user when a damaged cache file was moved aside (and where it is kept)."""
    if conn.manager.cache_notice:
        print(f"d365sync: {conn.manager.cache_notice}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:  # this package's debug lines on stderr (others' warnings only)
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("d365sync_nb").setLevel(logging.DEBUG)
    try:
        return COMMANDS[args.command](args)
    except ConfigurationError as exc:
        if args.debug:
            raise
        print(f"d365sync: error: {exc}", file=sys.stderr)
        return 2
    except D365SyncError as exc:
        if args.debug:
            raise
        print(f"d365sync: error: {exc}", file=sys.stderr)
        if args.command == "sync" and args.json:  # sync --json always ends with its JSON line
            print(json.dumps({"session_id": None, "status": "failed", "error": str(exc)}))
        return 1
    except KeyboardInterrupt:
        print("d365sync: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `d365sync requests | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return 1


if __name__ == "__main__":
    sys.exit(main())
