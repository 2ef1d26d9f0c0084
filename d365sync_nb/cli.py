"""The ``d365sync`` command: emulator, sync, history, search, demo (and mcp)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from d365sync_nb import render
from d365sync_nb.connection import (
    Connection,
    add_connection_arguments,
    connect,
    connect_from_args,
)
from d365sync_nb.errors import ConfigurationError, D365SyncError
from d365sync_nb.models import STRATEGY_DESCRIPTIONS, SyncSession, SyncStatus

HEARTBEAT_SECONDS = 10.0  # off a terminal (CI logs), a status line at least this often
EXIT_CODES = {SyncStatus.COMPLETED: 0, SyncStatus.FAILED: 1, SyncStatus.CANCELLED: 130}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d365sync", description="Sync D365 F&O metadata into a local cache."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    emu = sub.add_parser("emulator", help="serve the embedded D365 metadata emulator")
    emu.add_argument("--port", type=int, default=0)
    emu.add_argument("--scale", default="small", choices=["small", "realistic"])
    emu.add_argument("--latency-ms", type=float, default=0.0)
    emu.add_argument("--max-concurrency", type=int, default=None)
    emu.add_argument("--fault-rate", type=float, default=0.0)
    emu.add_argument("--page-size", type=int, default=None)
    emu.add_argument(
        "--dataset-version",
        type=int,
        default=1,
        choices=(1, 2),
        help="which release of the emulated environment to serve (2: the 'upgraded' one)",
    )

    sync = sub.add_parser("sync", help="run one sync session with live progress")
    add_connection_arguments(sync, scale_default="small")
    strategies = "; ".join(f"{s.value}: {d}" for s, d in STRATEGY_DESCRIPTIONS.items())
    sync.add_argument("--strategy", default="full", help=f"one of: {strategies}")
    sync.add_argument("--version", dest="global_version_id", default=None)
    sync.add_argument("--force", action="store_true", help="sync even when up to date")
    sync.add_argument("--json", action="store_true", help="end with one JSON line on stdout")

    hist = sub.add_parser("history", help="recorded sync sessions")
    add_connection_arguments(hist, scale_default="small")
    hist.add_argument("--limit", type=int, default=20)
    hist.add_argument("--json", action="store_true")

    search = sub.add_parser("search", help="search the cached metadata")
    search.add_argument("text")
    add_connection_arguments(search, scale_default="small")
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="emulator + full sync + summary")
    demo.add_argument("--scale", default="small", choices=["small", "realistic"])
    demo.add_argument("--latency-ms", type=float, default=20.0)
    demo.add_argument("--cache-dir")
    demo.add_argument("--strategy", default="full")

    mcp = sub.add_parser("mcp", help="serve the five sync tools over MCP (stdio)")
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
    conn = connect_from_args(args)
    try:
        sessions = conn.manager.get_session_history(limit=args.limit)
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
                    "labels": s.counts.get("labels"),
                    "error": s.error,
                }
                for s in sessions
            ]
            print(render.table(rows))
    finally:
        conn.close()
    return 0


def _search(args: argparse.Namespace) -> int:
    conn = connect_from_args(args)
    try:
        hits = conn.manager.search(args.text, limit=args.limit)
        print(json.dumps(hits) if args.json else render.table(hits))
    finally:
        conn.close()
    return 0


def _sync(args: argparse.Namespace) -> int:
    conn = connect_from_args(args)
    try:
        return asyncio.run(
            run_sync(
                conn, args.strategy, args.global_version_id, force=args.force, as_json=args.json
            )
        )
    finally:
        conn.close()


def _demo(args: argparse.Namespace) -> int:
    print(f"Starting the embedded D365 emulator ({args.scale} dataset)...", file=sys.stderr)
    conn = connect(
        demo=True, scale=args.scale, latency_ms=args.latency_ms, cache_dir=args.cache_dir
    )
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
    from d365sync_nb.emulator import EmulatorOptions, serve

    options = EmulatorOptions(
        scale=args.scale,
        version=args.dataset_version,
        latency_ms=args.latency_ms,
        max_concurrency=args.max_concurrency,
        fault_rate=args.fault_rate,
        page_size=args.page_size,
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
    conn = connect_from_args(args)
    try:
        mcp_server.serve_stdio(conn, debug=args.debug)
    finally:
        conn.close()
    return 0


COMMANDS = {
    "emulator": _emulator,
    "sync": _sync,
    "history": _history,
    "search": _search,
    "demo": _demo,
    "mcp": _mcp,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        if getattr(args, "json", False):
            print(json.dumps({"session_id": None, "status": "failed", "error": str(exc)}))
        return 1
    except KeyboardInterrupt:
        print("d365sync: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
