"""``%d365sync sessions``: the running sessions as a DataFrame."""

from __future__ import annotations

import argparse

import pandas as pd

from d365sync_nb.notebook import tables
from d365sync_nb.notebook.state import state

NAME = "sessions"
SUMMARY = "running sessions as a DataFrame"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def sessions() -> pd.DataFrame:
    """Running sessions: progress, phase, current item, ETA, throughput."""
    manager, _ = state.require()
    return tables.sessions_frame(manager.get_active_sessions())


def run(args: argparse.Namespace) -> pd.DataFrame:
    return sessions()
