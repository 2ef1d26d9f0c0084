"""``%load_ext d365sync_nb``: register the ``%d365sync`` magics and their ``D365Sync`` config."""

from __future__ import annotations

from typing import Any

from d365sync_nb.notebook.magics import D365Sync


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%d365sync`` (idempotent); ``%config D365Sync`` lists its settings."""
    magics = D365Sync(shell=ipython)
    ipython.register_magics(magics)
    configurables = ipython.configurables
    configurables[:] = [c for c in configurables if not isinstance(c, D365Sync)]
    configurables.append(magics)


def unload_ipython_extension(ipython: Any) -> None:
    """Forget ``%d365sync`` (running sessions and the connection are left alone)."""
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, D365Sync)]
    line_magics = ipython.magics_manager.magics.get("line", {})
    line_magics.pop("d365sync", None)
    ipython.magics_manager.registry.pop("D365Sync", None)
