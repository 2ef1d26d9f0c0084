"""d365sync_nb: observable, cancellable D365 F&O metadata sync for JupyterLab, CLI and AI tools.

Core (UI-free): ``SyncSessionManager`` and its models, the ``D365MetadataClient``, the
``MetadataStore`` cache, and the embedded ``emulator``. Surfaces: ``%load_ext d365sync_nb``
(magics and widget panel), ``d365sync_nb.tools`` (assistant tools, MCP) and the ``d365sync`` CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from d365sync_nb import logs

if TYPE_CHECKING:  # the names below are loaded when first used (PEP 562): an interrupt while
    # the command starts is one line, and `import d365sync_nb` stays light
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

_LAZY = {
    **dict.fromkeys(("ConnectionSettings", "resolve_settings"), "d365sync_nb.config"),
    **dict.fromkeys(
        ("Connection", "connect", "default_connection", "registry", "set_default_connection"),
        "d365sync_nb.connection",
    ),
    **dict.fromkeys(
        ("ConfigurationError", "D365AuthError", "D365Error", "D365HTTPError",
         "D365ResponseError", "D365SyncError", "D365TransportError", "SessionConflictError",
         "SessionNotFoundError"),
        "d365sync_nb.errors",
    ),
    **dict.fromkeys(
        ("PhaseProgress", "PhaseStatus", "StartResult", "SyncPhase", "SyncSession", "SyncStatus",
         "SyncStrategy"),
        "d365sync_nb.models",
    ),
    "SyncSessionManager": "d365sync_nb.sync",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'd365sync_nb' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
