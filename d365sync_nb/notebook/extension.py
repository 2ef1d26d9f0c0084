"""``%load_ext d365sync_nb``: register the ``%d365sync`` magics and the ``D365Sync`` config."""

from __future__ import annotations

from typing import Any

from d365sync_nb.notebook.config import D365Sync
from d365sync_nb.notebook.magics import D365SyncMagics


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%d365sync`` (idempotent); ``%config D365Sync`` lists its settings."""
    ipython.register_magics(D365SyncMagics(shell=ipython))
    config = D365Sync.instance(parent=ipython)
    if config.parent is not ipython:  # made earlier by a Python function: adopt the shell's
        config.parent = ipython
        config.update_config(ipython.config)
    configurables = ipython.configurables
    configurables[:] = [c for c in configurables if not isinstance(c, D365Sync)]
    configurables.append(config)


def unload_ipython_extension(ipython: Any) -> None:
    """Forget ``%d365sync`` (running sessions, the connection and the settings are kept)."""
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, D365Sync)]
    line_magics = ipython.magics_manager.magics.get("line", {})
    line_magics.pop("d365sync", None)
    ipython.magics_manager.registry.pop(D365SyncMagics.__name__, None)
