"""The user-facing operations, each declared once (:class:`~.spec.Operation`).

The ``d365sync`` command (:mod:`d365sync_nb.cli`), the ``%d365sync`` magic and the Python
functions of :mod:`d365sync_nb.notebook` are built from :data:`OPERATIONS`; the tools take
their arguments from the same declarations. To add an operation: write one module here with
its ``OPERATION`` (arguments, the core call, the view it returns), add it to
:data:`OPERATIONS`, and test it; every surface then has it.
"""

from __future__ import annotations

from d365sync_nb.operations import (
    check_version,
    checks,
    compare,
    diagnose,
    diff,
    export,
    history,
    phases,
    report,
    requests,
    search,
    sessions,
    tables,
)
from d365sync_nb.operations.spec import REQUIRED, Arg, Operation, TableView, View

OPERATIONS: tuple[Operation, ...] = (
    sessions.OPERATION,
    history.OPERATION,
    checks.OPERATION,
    check_version.OPERATION,
    phases.OPERATION,
    requests.OPERATION,
    diagnose.OPERATION,
    compare.OPERATION,
    search.OPERATION,
    *tables.OPERATIONS,
    diff.OPERATION,
    export.OPERATION,
    report.OPERATION,
)
BY_NAME = {op.name: op for op in OPERATIONS}

__all__ = ["BY_NAME", "OPERATIONS", "REQUIRED", "Arg", "Operation", "TableView", "View"]
