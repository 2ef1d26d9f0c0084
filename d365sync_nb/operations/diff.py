"""``diff``: what changed between two versions, or against another environment."""

from __future__ import annotations

from typing import Any

from d365sync_nb.connection import cache_file_of
from d365sync_nb.operations.spec import Arg, Operation
from d365sync_nb.operations.views import DiffResult


def call(manager: Any, from_version: str | None, to_version: str | None, against: str | None
         ) -> DiffResult:  # fmt: skip
    explorer = manager.explorer
    if against is not None:
        other = cache_file_of(against, manager.settings.resolved_cache_dir())
        return DiffResult(
            explorer.diff_against(other, version=from_version, other_version=to_version)
        )
    return DiffResult(explorer.diff(from_version, to_version))


OPERATION = Operation(
    name="diff",
    summary="what changed between two versions (--from --to) or environments (--against ENV)",
    doc="One row per change: kind, parent, name, change (added/removed/changed) and, for a "
    "change, the attribute with its before and after values. By default the two latest "
    "synced versions of this environment; against compares this environment's current "
    "version (or from_version) with another environment's (to_version, default its current "
    "one).",
    args=(
        Arg(
            "from_version",
            "a global version id or an application version (default: the older "
            "of the two latest; with --against: this environment's current version)",
            flag="--from",
            metavar="V",
            keyword_only=False,
        ),
        Arg("to_version", "default: the latest", flag="--to", metavar="V", keyword_only=False),
        Arg(
            "against",
            "compare with another environment's cache: a profile, base URL, cache "
            "file or cache name",
            metavar="ENV",
        ),
    ),
    call=call,
    csv=True,
    json_help='{"from", "to", "changes": [...], "summary": {...}}',
)
