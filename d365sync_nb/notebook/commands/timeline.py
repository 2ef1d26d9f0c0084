"""``%d365sync timeline``: the phase timeline (Gantt) chart of a session."""

from __future__ import annotations

import argparse

from matplotlib.figure import Figure

from d365sync_nb.notebook import charts
from d365sync_nb.notebook.commands import phases

NAME = "timeline"
SUMMARY = "phase timeline chart (Gantt) of a session"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    phases.add_arguments(parser)


def timeline(session_id: str | None = None) -> Figure:
    """Phase timeline (Gantt) of a session (the latest when no id)."""
    return charts.phase_timeline(phases.phases(session_id))


def run(args: argparse.Namespace) -> Figure:
    return timeline(args.session_id)
