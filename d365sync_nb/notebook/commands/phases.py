"""``%d365sync phases``: one row per phase of a session, as a DataFrame."""

from __future__ import annotations

import argparse

import pandas as pd

from d365sync_nb.notebook import tables
from d365sync_nb.notebook.state import get_session

NAME = "phases"
SUMMARY = "one row per phase of a session as a DataFrame"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "session_id", nargs="?", help="session id or unique prefix (default: the latest)"
    )


def phases(session_id: str | None = None) -> pd.DataFrame:
    """One row per phase of a session (the latest when no id)."""
    return tables.phases_frame(get_session(session_id))


def run(args: argparse.Namespace) -> pd.DataFrame:
    return phases(args.session_id)
