"""The ``d365sync`` command: emulator, sync, demo and mcp, plus one subcommand per operation
of :mod:`d365sync_nb.operations` (history, requests, diagnose, the explorer's tables, ...),
built from its declaration.

Bad input is one line on stderr and exit code 2 (a usage error: argparse's and the core's
ConfigurationError alike); an operation that failed (an unknown session, the service) exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from d365sync_nb import cli_watch, render
from d365sync_nb.arguments import bounded_int, non_negative_float, probability
from d365sync_nb.connection import (
    Connection,
    add_connection_arguments,
    connect,
    connect_from_args,
)
from d365sync_nb.errors import ConfigurationError, D365SyncError
from d365sync_nb.models import SyncSession, SyncStatus, SyncStrategy
from d365sync_nb.operations import BY_NAME, OPERATIONS, Operation
from d365sync_nb.operations import sync as sync_operation
from d365sync_nb.operations.views import csv_text
from d365sync_nb.views.session import SUMMARY_COUNTS

HEARTBEAT_SECONDS = 10.0  # off a terminal (CI logs), a status line at least this often
EXIT_CODES = {SyncStatus.COMPLETED: 0, SyncStatus.FAILED: 1, SyncStatus.CANCELLED: 130}


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
        help="emulator release to serve (2: the environment's next release, with entities, "
        "fields, enumerations and members added, removed and changed)",
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
    for arg in sync_operation.ARGS:
        arg.add_to(sync)
    sync.add_argument("--json", action="store_true", help="end with one JSON line on stdout")

    for operation in OPERATIONS:
        if operation.cli:
            add_operation(sub, operation)
    cli_watch.add_commands(sub)

    demo = sub.add_parser("demo", help="emulator + full sync + summary")
    demo.add_argument("--scale", default="small", choices=["small", "realistic"])
    demo.add_argument("--latency-ms", type=non_negative_float, default=20.0)
    demo.add_argument("--cache-dir")
    demo.add_argument("--strategy", default="full")

    mcp = sub.add_parser(
        "mcp",
        help="serve the sync and metadata tools over MCP (stdio; --http for Streamable HTTP)",
    )
    add_connection_arguments(mcp, scale_default="small")
    mcp.add_argument("--http", action="store_true",
                     help="serve Streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1",
                     help="with --http: the address to bind (default 127.0.0.1; any other than "
                     "loopback requires a bearer token: $D365SYNC_MCP_TOKEN, or one generated "
                     "and printed once)")
    mcp.add_argument("--port", type=bounded_int(0, 65535), default=8765,
                     help="with --http: the port (default 8765; 0: any free port)")  # fmt: skip
    return parser


def add_operation(sub: Any, operation: Operation) -> None:
    """A subcommand built from an operation's declaration, with the connection options and
    ``--json`` (and ``--csv`` for a table)."""
    parser = sub.add_parser(operation.name, help=operation.summary, description=operation.summary)
    operation.add_arguments(parser)
    add_connection_arguments(parser, scale_default="small")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help=operation.json_help)
    if operation.csv:
        output.add_argument("--csv", action="store_true", help="CSV with a header row")


def run_operation(operation: Operation, args: argparse.Namespace) -> int:
    """Run an operation on the connection its options name, then lay out its view: JSON, CSV,
    or its text (with its title, if any, on stderr)."""
    with connect_from_args(args) as conn:
        view = operation.run(conn.manager, operation.values(args))
    if args.json:
        print(json.dumps(view.to_json(), ensure_ascii=False))
    elif getattr(args, "csv", False):
        write = getattr(view, "csv", None)
        sys.stdout.write(write() if write else csv_text(view.columns, view.rows()))
    else:
        if view.title:
            print(view.title, file=sys.stderr)
        print(view.text())
    return 0


def session_json(session: SyncSession) -> dict[str, Any]:
    """The ``--json`` result object."""
    return {
        "session_id": session.session_id,
        "status": session.status.value,
        "strategy": session.strategy.value,
        "global_version_id": session.global_version_id,
        "duration_seconds": session.duration_seconds,
        "counts": {key: session.counts.get(key, 0) for key, _ in SUMMARY_COUNTS},
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
        "requests": session.http.requests,
        "http": session.http.model_dump(mode="json"),
    }


async def run_sync(
    conn: Connection,
    strategy: str,
    version: int | None,
    *,
    force: bool,
    as_json: bool,
    languages: str | None = None,
) -> int:
    manager = conn.manager
    result = await manager.start(
        version, strategy, initiated_by="cli", force=force, languages=languages
    )
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
                if cancel_requested and sig == signal.SIGINT:  # a second Ctrl-C while the
                    signal.signal(sig, signal.SIG_IGN)  # cancel ends: no traceback at exit
        progress.close()
    progress(session)  # the phases not printed yet, then the outcome
    if as_json:
        print(json.dumps(session_json(session)))
    return EXIT_CODES.get(session.status, 1)


def _sync(args: argparse.Namespace) -> int:
    strategy = args.strategy or "full"
    SyncStrategy.parse(strategy)  # a typo fails before anything is opened or written
    conn = connect_from_args(args, repair_cache=True)
    _say_cache_notice(conn)
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)  # a realistic sync then runs no full collection
    try:
        return asyncio.run(
            run_sync(
                conn,
                strategy,
                args.version,
                force=args.force,
                as_json=args.json,
                languages=args.languages,
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
        if args.http:
            mcp_server.serve_http(conn, host=args.host, port=args.port, debug=args.debug)
        else:
            mcp_server.serve_stdio(conn, debug=args.debug)
    finally:
        conn.close()
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "emulator": _emulator,
    "sync": _sync,
    "demo": _demo,
    **cli_watch.COMMANDS,
    "mcp": _mcp,
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
        if args.command in BY_NAME:
            return run_operation(BY_NAME[args.command], args)
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
