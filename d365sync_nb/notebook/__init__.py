"""The Jupyter surface: ``%d365sync`` magics, a live widget panel, pandas tables and charts.

``%load_ext d365sync_nb`` then ``%d365sync help``. The same from Python::

    from d365sync_nb.notebook import connect, start, progress, cancel, sessions, history
    connect(demo=True); start(wait=True); history()
"""

from __future__ import annotations

from d365sync_nb.notebook import charts, tables
from d365sync_nb.notebook.api import (
    ConnectionInfo,
    SessionInterrupted,
    cancel,
    connect,
    get_connection,
    get_panel,
    get_session,
    history,
    panel,
    phases,
    progress,
    search,
    sessions,
    start,
    timeline,
)
from d365sync_nb.notebook.context import context
from d365sync_nb.notebook.extension import load_ipython_extension, unload_ipython_extension
from d365sync_nb.notebook.magics import D365Sync

options = context.options

__all__ = [
    "ConnectionInfo",
    "D365Sync",
    "SessionInterrupted",
    "cancel",
    "charts",
    "connect",
    "get_connection",
    "get_panel",
    "get_session",
    "history",
    "load_ipython_extension",
    "options",
    "panel",
    "phases",
    "progress",
    "search",
    "sessions",
    "start",
    "tables",
    "timeline",
    "unload_ipython_extension",
]
