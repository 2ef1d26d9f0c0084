"""The ``%d365sync`` subcommands, one module each (in help order); the six metadata tables
share one module (:mod:`.metadata`, one command object each).

Each command owns ``NAME``, ``SUMMARY``, ``add_arguments(parser)``, its public Python function
(re-exported by :mod:`d365sync_nb.notebook`) and ``run(args)``, which calls that function with
the parsed line. The magics (:mod:`d365sync_nb.notebook.magics`) only route to ``run``.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol

from d365sync_nb.notebook.commands import (
    cancel,
    compare,
    connect,
    diagnose,
    diff,
    export,
    history,
    metadata,
    panel,
    phases,
    progress,
    requests,
    search,
    sessions,
    start,
    timeline,
    watch,
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
    *metadata.COMMANDS,
    diff,
    export,
    watch,
    panel,
)


class Command(Protocol):
    """What the router needs of a subcommand (a module or a command object)."""

    NAME: str
    SUMMARY: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> Any: ...


__all__ = ["MODULES", "Command"]
