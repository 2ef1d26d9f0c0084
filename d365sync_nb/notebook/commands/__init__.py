"""The ``%d365sync`` subcommands, one module each (in help order).

Each module owns ``NAME``, ``SUMMARY``, ``add_arguments(parser)``, its public Python function
(re-exported by :mod:`d365sync_nb.notebook`) and ``run(args)``, which calls that function with
the parsed line. The magics (:mod:`d365sync_nb.notebook.magics`) only route to ``run``.
"""

from __future__ import annotations

from d365sync_nb.notebook.commands import (
    cancel,
    compare,
    connect,
    diagnose,
    history,
    panel,
    phases,
    progress,
    requests,
    search,
    sessions,
    start,
    timeline,
)

MODULES = (
    connect,
    start,
    progress,
    cancel,
    sessions,
    history,
    phases,
    timeline,
    requests,
    diagnose,
    compare,
    search,
    panel,
)

__all__ = ["MODULES"]
