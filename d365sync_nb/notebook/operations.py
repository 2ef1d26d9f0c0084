"""The operations in a notebook: the ``%d365sync`` subcommand and the Python function of each
:class:`~d365sync_nb.operations.spec.Operation`, both derived from its declaration.

A function checks its values as the magic's parser does (``history(limit="x")`` is the same
one-line error as ``--limit x``), runs the operation on the notebook's connection and lays its
view out as a notebook shows it: a typed DataFrame for a table, a report object otherwise.
"""

from __future__ import annotations

import argparse
import html
from collections.abc import Callable
from typing import Any

import pandas as pd

from d365sync_nb.notebook.config import D365Sync
from d365sync_nb.notebook.diagnosis import diagnosis_view
from d365sync_nb.notebook.state import state
from d365sync_nb.operations import OPERATIONS, Operation
from d365sync_nb.views import frames as tables


class ReportDisplay:
    """A session's report in a notebook: the report itself (HTML), or its summary as text;
    ``.report`` is the view (``.html()`` the whole file)."""

    def __init__(self, report: Any) -> None:
        self.report = report

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        written = f"{self.report.title}\n\n" if self.report.title else ""
        note = f"<p><i>{html.escape(self.report.title)}</i></p>" if self.report.title else ""
        return {"text/plain": written + self.report.text(), "text/html": note + self.report.body()}


# How the notebook lays out each operation's view (others: a DataFrame of its rows).
PRESENTERS: dict[str, Callable[[Any], Any]] = {
    "history": lambda v: tables.history_frame(v.sessions),
    "checks": lambda v: tables.checks_frame(v.checks),
    "check-version": lambda v: v,  # a report: the versions and the verdict
    "sessions": lambda v: tables.sessions_frame(v.sessions),
    "phases": lambda v: tables.phases_frame(v.session),
    "requests": lambda v: tables.requests_frame(v.log, v.session),
    "diagnose": diagnosis_view,
    "compare": lambda v: tables.compare_frame(v.phases, v.a, v.b),
    "search": lambda v: tables.search_frame(v.hits),
    "diff": lambda v: tables.diff_frame(v.diff),
    "report": ReportDisplay,
    **dict.fromkeys(
        ("entities", "fields", "relations", "enums", "members", "labels", "coverage"),
        lambda v: tables.metadata_frame(v.table),
    ),
}


def present(operation: Operation, view: Any) -> Any:
    presenter = PRESENTERS.get(operation.name)
    if presenter is not None:
        return presenter(view)
    return pd.DataFrame(view.rows(), columns=list(view.columns))


def invoke(operation: Operation, values: dict[str, Any]) -> Any:
    """Run an operation on the notebook's connection (notebook settings fill the defaults)."""
    manager, _ = state.require()
    config = D365Sync.instance()
    for arg in operation.args:
        if arg.config_default and values.get(arg.name) is None:
            values[arg.name] = getattr(config, arg.config_default)
    return operation.run(manager, values)


def python_function(operation: Operation) -> Callable[..., Any]:
    """The operation as a Python function with its own signature and docstring."""
    signature = operation.signature(
        defaults={a.name: None for a in operation.args if a.config_default}
    )

    def function(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return present(operation, invoke(operation, dict(bound.arguments)))

    function.__name__ = function.__qualname__ = operation.function_name
    function.__doc__ = operation.docstring()
    function.__signature__ = signature  # type: ignore[attr-defined]
    function.__module__ = "d365sync_nb.notebook"
    return function


class OperationCommand:
    """An operation as a ``%d365sync`` subcommand (what the router needs)."""

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.NAME = operation.name
        self.SUMMARY = operation.summary
        self.function = python_function(operation)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        self.operation.add_arguments(parser)

    def run(self, args: argparse.Namespace) -> Any:
        view = invoke(self.operation, self.operation.values(args))
        heading = getattr(view, "heading", None)
        if heading:
            print(heading)
        return present(self.operation, view)


COMMANDS = {op.name: OperationCommand(op) for op in OPERATIONS if op.notebook}
FUNCTIONS = {command.operation.function_name: command.function for command in COMMANDS.values()}
