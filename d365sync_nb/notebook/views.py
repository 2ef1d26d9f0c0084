"""Tables, charts and the dashboard: ``sessions``, ``history``, ``phases``, ``timeline``,
``search``, ``panel``."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from d365sync_nb.errors import ConfigurationError
from d365sync_nb.notebook import charts, tables
from d365sync_nb.notebook.context import context
from d365sync_nb.notebook.dashboard import Dashboard, TextDashboard
from d365sync_nb.notebook.session_commands import get_session


def sessions() -> pd.DataFrame:
    """Running sessions: progress, phase, current item, ETA, throughput."""
    manager, _ = context.require()
    return tables.sessions_frame(manager.get_active_sessions())


def history(limit: int | None = None, status: str | None = None) -> pd.DataFrame:
    """Recorded sessions, newest first (``status``: completed, failed, cancelled, ...)."""
    manager, _ = context.require()
    count = context.options.history_limit if limit is None else limit
    if count < 1:
        raise ConfigurationError(f"--limit must be at least 1, not {count}")
    return tables.history_frame(manager.get_session_history(limit=count, status=status))


def phases(session_id: str | None = None) -> pd.DataFrame:
    """One row per phase of a session (the latest when no id)."""
    return tables.phases_frame(get_session(session_id))


def timeline(session_id: str | None = None) -> Figure:
    """Phase timeline (Gantt) of a session (the latest when no id)."""
    return charts.phase_timeline(phases(session_id))


def search(text: str, limit: int = 20) -> pd.DataFrame:
    """Search cached entities, properties, enumerations and labels (full text, prefix match)."""
    manager, _ = context.require()
    if not text or not text.strip():
        raise ConfigurationError("Nothing to search for: give some text, e.g. customer")
    if limit < 1:
        raise ConfigurationError(f"--limit must be at least 1, not {limit}")
    return tables.search_frame(manager.search(text, limit=limit))


def panel(history_limit: int = 10) -> Dashboard | TextDashboard:
    """Dashboard: running sessions with their live bars, plus recent history."""
    manager, bridge = context.require()
    if not context.use_widgets():
        return TextDashboard(manager, history_limit)
    if context.dashboard is not None:
        context.dashboard.close()
    context.dashboard = Dashboard(manager, bridge, context.panel_for, history_limit=history_limit)
    return context.dashboard
