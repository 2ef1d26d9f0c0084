"""``%d365sync export``: a version's tables to CSV or Parquet files in a directory."""

from __future__ import annotations

import argparse

import pandas as pd

from d365sync_nb.explorer.export import FORMATS
from d365sync_nb.notebook.state import state

NAME = "export"
SUMMARY = "write a version's tables (entities, fields, ...) to DIR as csv or parquet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="created when missing")
    parser.add_argument("--format", default="csv", choices=FORMATS, help="csv (default) or "
                        "parquet (needs pyarrow: pip install 'd365sync_nb[parquet]')")  # fmt: skip
    parser.add_argument("--version", help="a version id or application version (default: latest)")


def export(directory: str, fmt: str = "csv", *, version: str | int | None = None) -> pd.DataFrame:
    """Write every table of a version (entities, fields, relations, actions, enums, members,
    labels) to ``directory``, one file each; returns the files written with their row counts."""
    manager, _ = state.require()
    written = manager.explorer.export(directory, fmt, version=version)
    return pd.DataFrame(written, columns=["table", "rows", "path", "replaced"])


def run(args: argparse.Namespace) -> pd.DataFrame:
    return export(args.directory, args.format, version=args.version)
