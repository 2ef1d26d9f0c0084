"""The notebook's Python API: one function per ``%d365sync`` subcommand (plus getters).

Every function works on the notebook's one connection (see :func:`connect`) and only calls the
session manager; the magics parse a line and call these.
"""

from __future__ import annotations

from d365sync_nb.notebook.connecting import ConnectionInfo, connect, get_connection
from d365sync_nb.notebook.session_commands import (
    SessionInterrupted,
    cancel,
    get_panel,
    get_session,
    progress,
    start,
)
from d365sync_nb.notebook.views import history, panel, phases, search, sessions, timeline

__all__ = [
    "ConnectionInfo",
    "SessionInterrupted",
    "cancel",
    "connect",
    "get_connection",
    "get_panel",
    "get_session",
    "history",
    "panel",
    "phases",
    "progress",
    "search",
    "sessions",
    "start",
    "timeline",
]
