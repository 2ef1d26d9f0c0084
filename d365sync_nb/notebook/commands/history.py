"""``%d365sync history``: the recorded sessions as a DataFrame, filtered."""

from __future__ import annotations

import argparse
from datetime import datetime

import pandas as pd

from d365sync_nb.arguments import bounded_int
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.models import STRATEGY_DESCRIPTIONS, SyncStatus
from d365sync_nb.notebook import tables
from d365sync_nb.notebook.config import D365Sync
from d365sync_nb.notebook.state import state

NAME = "history"
SUMMARY = "recorded sessions as a DataFrame (--status --strategy --since --until --version)"
MAX_LIMIT = 1000
TIME_HELP = "a date or ISO time, e.g. 2026-11-30 or 2026-11-30T14:00 (UTC unless it says)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit",
        type=bounded_int(1, MAX_LIMIT),
        default=None,
        help=f"sessions to show, 1 to {MAX_LIMIT} (default: D365Sync.history_limit)",
    )
    parser.add_argument("--status", choices=[s.value for s in SyncStatus], help="only this status")
    parser.add_argument(
        "--strategy",
        help=f"only this strategy: {', '.join(s.value for s in STRATEGY_DESCRIPTIONS)}",
    )
    parser.add_argument("--since", help=f"only sessions started at or after this: {TIME_HELP}")
    parser.add_argument("--until", help=f"only sessions started before this: {TIME_HELP}")
    parser.add_argument("--version", help="only sessions of this global version id")
    parser.add_argument(
        "--checks", action="store_true", help="the watch's version checks instead of sessions"
    )


def history(
    limit: int | None = None,
    status: str | None = None,
    strategy: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    version: int | str | None = None,
) -> pd.DataFrame:
    """Recorded sessions, newest first, filtered by ``status`` (completed, failed, cancelled,
    running), ``strategy``, start time (``since`` <= started < ``until``: dates or ISO times,
    naive ones meaning UTC) and global ``version``; at most ``limit`` of them."""
    manager, _ = state.require()
    count = D365Sync.instance().history_limit if limit is None else limit
    if not 1 <= count <= MAX_LIMIT:
        raise ConfigurationError(f"--limit must be between 1 and {MAX_LIMIT}, not {count}")
    sessions = manager.get_session_history(
        limit=count, status=status, strategy=strategy, since=since, until=until, version=version
    )
    return tables.history_frame(sessions)


def run(args: argparse.Namespace) -> pd.DataFrame:
    if args.checks:
        from d365sync_nb.notebook.commands.watch import checks

        return checks(args.limit or D365Sync.instance().history_limit)
    return history(args.limit, args.status, args.strategy, args.since, args.until, args.version)
