"""``%d365sync diff``: what changed between two versions, or against another environment."""

from __future__ import annotations

import argparse

import pandas as pd

from d365sync_nb.connection import cache_file_of
from d365sync_nb.notebook import tables
from d365sync_nb.notebook.state import state

NAME = "diff"
SUMMARY = "what changed between two versions (--from --to) or environments (--against ENV)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="from_version", metavar="V",
        help="a global version id or an application version (default: the older of the two "
        "latest; with --against: this environment's current version)",
    )  # fmt: skip
    parser.add_argument("--to", dest="to_version", metavar="V", help="default: the latest")
    parser.add_argument(
        "--against",
        metavar="ENV",
        help="another environment's cache: a profile, base URL, cache file or cache name",
    )


def diff(
    from_version: str | int | None = None,
    to_version: str | int | None = None,
    *,
    against: str | None = None,
) -> pd.DataFrame:
    """One row per change: kind, parent, name, change (added/removed/changed) and, for a
    change, the attribute with its before and after values.

    By default the two latest synced versions of this environment; ``against`` compares this
    environment's current version (or ``from_version``) with another environment's
    (``to_version``, default its current one). ``frame.attrs`` holds ``summary`` (counts per
    kind), ``summary_text`` ("+5 entities, -3; ..."), ``from`` and ``to``.
    """
    manager, _ = state.require()
    explorer = manager.explorer
    if against is not None:
        other = cache_file_of(against, manager.settings.resolved_cache_dir())
        result = explorer.diff_against(other, version=from_version, other_version=to_version)
    else:
        result = explorer.diff(from_version, to_version)
    return tables.diff_frame(result)


def run(args: argparse.Namespace) -> pd.DataFrame:
    frame = diff(args.from_version, args.to_version, against=args.against)
    print(f"{frame.attrs['title']}: {frame.attrs['summary_text']}")
    return frame
