"""``%d365sync panel``: the dashboard (running sessions with live bars, plus recent history)."""

from __future__ import annotations

import argparse

from d365sync_nb.notebook.dashboard import Dashboard, TextDashboard
from d365sync_nb.notebook.state import state

NAME = "panel"
SUMMARY = "dashboard: running sessions with live bars, plus recent history"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def panel(history_limit: int = 10) -> Dashboard | TextDashboard:
    """Dashboard: running sessions with their live bars, plus recent history."""
    manager, bridge = state.require()
    if not state.use_widgets():
        return TextDashboard(manager, history_limit, [t.text for t in state.notices.recent()])
    if state.dashboard is not None:
        state.dashboard.close()
    state.dashboard = Dashboard(manager, bridge, state.panel_for, history_limit=history_limit)
    watch = state.watch
    state.dashboard.show_watch(watch.status_line() if watch is not None else None)
    state.dashboard.show_notices([t.text for t in state.notices.recent()])
    return state.dashboard


def run(args: argparse.Namespace) -> Dashboard | TextDashboard:
    return panel()
