"""d365sync_nb: observable, cancellable D365 F&O metadata sync for JupyterLab, CLI and AI tools.

Core (UI-free): ``SyncSessionManager`` and its models, the ``D365MetadataClient``, the
``MetadataStore`` cache, and the embedded ``emulator``. Surfaces: ``%load_ext d365sync_nb``
(magics and widget panel), ``d365sync_nb.tools`` (assistant tools, MCP) and the ``d365sync`` CLI.
"""

from __future__ import annotations

from typing import Any

from d365sync_nb import logs
from d365sync_nb.config import ConnectionSettings, resolve_settings
from d365sync_nb.connection import (
    Connection,
    connect,
    default_connection,
    registry,
    set_default_connection,
)
from d365sync_nb.errors import (
    ConfigurationError,
    D365AuthError,
    D365Error,
    D365HTTPError,
    D365ResponseError,
    D365SyncError,
    D365TransportError,
    SessionConflictError,
    SessionNotFoundError,
)
from d365sync_nb.models import (
    PhaseProgress,
    PhaseStatus,
    StartResult,
    SyncPhase,
    SyncSession,
    SyncStatus,
    SyncStrategy,
)
from d365sync_nb.sync import SyncSessionManager

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext d365sync_nb``: register the ``%d365sync`` magics."""
    from d365sync_nb.notebook.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from d365sync_nb.notebook.extension import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "ConfigurationError",
    "Connection",
    "ConnectionSettings",
    "D365AuthError",
    "D365Error",
    "D365HTTPError",
    "D365ResponseError",
    "D365SyncError",
    "D365TransportError",
    "PhaseProgress",
    "PhaseStatus",
    "SessionConflictError",
    "SessionNotFoundError",
    "StartResult",
    "SyncPhase",
    "SyncSession",
    "SyncSessionManager",
    "SyncStatus",
    "SyncStrategy",
    "connect",
    "default_connection",
    "registry",
    "resolve_settings",
    "set_default_connection",
]

logs.install()  # one line per log record, no traceback unless --debug
