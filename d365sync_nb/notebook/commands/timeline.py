"""``%d365sync timeline``: the phase timeline (Gantt) chart of a session."""

from __future__ import annotations

import argparse

from matplotlib.figure import Figure

from d365sync_nb.notebook.operations import FUNCTIONS
from d365sync_nb.operations.common import SESSION_ID
from d365sync_nb.views import charts

NAME = "timeline"
SUMMARY = "phase timeline chart (Gantt) of a session"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    SESSION_ID.add_to(parser)


def timeline(session_id: str | None = None) -> Figure:
    """Phase timeline (Gantt) of a session (the latest when no id)."""
    return charts.phase_timeline(FUNCTIONS["phases"](session_id))


def run(args: argparse.Namespace) -> Figure:
    return timeline(args.session_id)
