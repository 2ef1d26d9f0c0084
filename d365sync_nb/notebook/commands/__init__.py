"""The ``%d365sync`` subcommands, in help order.

Most are operations, declared once in :mod:`d365sync_nb.operations` and turned into a
subcommand and a Python function by :mod:`d365sync_nb.notebook.operations`. The modules here
are the notebook's own: the connection and the live displays (connect, start, progress,
cancel, timeline, watch, panel). Each owns ``NAME``, ``SUMMARY``, ``add_arguments(parser)``, its
Python function and ``run(args)``.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol

from d365sync_nb.notebook.commands import (
    cancel,
    connect,
    panel,
    progress,
    start,
    timeline,
    watch,
)
from d365sync_nb.notebook.operations import COMMANDS as OPERATION_COMMANDS


class Command(Protocol):
    """What the router needs of a subcommand (a module or a command object)."""

    NAME: str
    SUMMARY: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> Any: ...


_OWN: tuple[Command, ...] = (connect, start, progress, cancel, timeline, watch, panel)
MODULES: tuple[Command, ...] = (
    *_OWN[:4],
    *OPERATION_COMMANDS.values(),
    *_OWN[4:],
)

__all__ = ["MODULES", "Command"]
