"""``export``: a version's tables written to a directory as CSV or Parquet files."""

from __future__ import annotations

from typing import Any

from d365sync_nb.explorer.export import FORMATS
from d365sync_nb.operations.common import VERSION
from d365sync_nb.operations.spec import REQUIRED, Arg, Operation
from d365sync_nb.operations.views import ExportView


def call(manager: Any, directory: str, fmt: str, version: str | None) -> ExportView:
    return ExportView(manager.explorer.export(directory, fmt, version=version))


OPERATION = Operation(
    name="export",
    summary="write a version's tables (entities, fields, ...) to DIR as csv or parquet",
    doc="Write every table of a version (entities, fields, relations, actions, enums, members, "
    "labels) to directory, one file each; returns the files written with their row counts.",
    args=(
        Arg("directory", "created when missing", positional=True, default=REQUIRED, metavar="DIR"),
        Arg(
            "fmt",
            "csv (default) or parquet (needs pyarrow: pip install 'd365sync_nb[parquet]')",
            flag="--format",
            default="csv",
            choices=FORMATS,
            keyword_only=False,
        ),
        VERSION,
    ),
    call=call,
    json_help="the files written, as JSON",
)
