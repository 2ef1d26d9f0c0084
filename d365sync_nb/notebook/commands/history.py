"""``%d365sync history``: the recorded sessions as a DataFrame."""

from __future__ import annotations

import argparse

import pandas as pd

from d365sync_nb.arguments import bounded_int
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.models import SyncStatus
from d365sync_nb.notebook import tables
from d365sync_nb.notebook.config import D365Sync
from d365sync_nb.notebook.state import state

NAME = "history"
SUMMARY = "recorded sessions as a DataFrame (--limit N, --status S)"
MAX_LIMIT = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit",
        type=bounded_int(1, MAX_LIMIT),
        default=None,
        help=f"sessions to show, 1 to {MAX_LIMIT} (default: D365Sync.history_limit)",
    )
    parser.add_argument("--status", choices=[s.value for s in SyncStatus], help="only this status")


def history(limit: int | None = None, status: str | None = None) -> pd.DataFrame:
    """Recorded sessions, newest first (``status``: completed, failed, cancelled, ...)."""
    manager, _ = state.require()
    count = D365Sync.instance().history_limit if limit is None else limit
    if not 1 <= count <= MAX_LIMIT:
        raise ConfigurationError(f"--limit must be between 1 and {MAX_LIMIT}, not {count}")
    return tables.history_frame(manager.get_session_history(limit=count, status=status))


def run(args: argparse.Namespace) -> pd.DataFrame:
    return history(args.limit, args.status)
