"""``%d365sync entities | fields | relations | enums | members | labels``: the cached metadata
as DataFrames (one command object each; their Python functions are re-exported by the package).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from d365sync_nb.explorer import MetadataExplorer
from d365sync_nb.notebook import tables
from d365sync_nb.notebook.state import state

VERSION_HELP = (
    "a global version id (as in history) or an application version, e.g. 10.0.42 "
    "(default: the latest)"
)
PATTERN_HELP = "case-insensitive substring, or a glob such as 'Cust*V3'"
ENTITY_HELP = "data entity, public entity or collection name (any case)"

Version = str | int | None


def explorer() -> MetadataExplorer:
    manager, _ = state.require()
    return manager.explorer


def entities(
    pattern: str | None = None, *, version: Version = None, category: str | None = None
) -> pd.DataFrame:
    """Data entities: public entity and collection names, category, read-only, data-service and
    data-management flags, field count, label. ``pattern`` matches any of the three names."""
    return tables.metadata_frame(explorer().entities(pattern, version=version, category=category))


def fields(entity: str, *, version: Version = None) -> pd.DataFrame:
    """One row per field of an entity: types, key, mandatory, allow edit, dimension, label id
    and text, and the enumeration of an enum field."""
    return tables.metadata_frame(explorer().fields(entity, version=version))


def relations(entity: str, *, version: Version = None) -> pd.DataFrame:
    """An entity's navigation properties: related entity, cardinality, constraints."""
    return tables.metadata_frame(explorer().relations(entity, version=version))


def enums(pattern: str | None = None, *, version: Version = None) -> pd.DataFrame:
    """Enumerations (name or label matching ``pattern``): label and member count."""
    return tables.metadata_frame(explorer().enums(pattern, version=version))


def members(enum: str, *, version: Version = None) -> pd.DataFrame:
    """The members of an enumeration: value, label id and text."""
    return tables.metadata_frame(explorer().members(enum, version=version))


def labels(pattern: str | None = None, *, missing: bool = False, version: Version = None
           ) -> pd.DataFrame:  # fmt: skip
    """The labels a version uses, with text and status (found, empty, missing, not_synced);
    ``missing``: only those without a text. ``pattern`` matches the id or the text."""
    return tables.metadata_frame(explorer().labels(pattern, missing=missing, version=version))


@dataclass(frozen=True)
class TableCommand:
    """One ``%d365sync`` table command: what the router needs (NAME, SUMMARY, ...)."""

    NAME: str
    SUMMARY: str
    argument: tuple[str, str]  # the positional: (name, help); "pattern" is optional
    function: Callable[..., pd.DataFrame]
    flags: tuple[str, ...] = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        name, text = self.argument
        parser.add_argument(name, nargs="?" if name == "pattern" else None, help=text)
        if "category" in self.flags:
            parser.add_argument("--category", help="only this entity category, e.g. Master")
        if "missing" in self.flags:
            parser.add_argument("--missing", action="store_true", help="only labels without text")
        parser.add_argument("--version", help=VERSION_HELP)

    def run(self, args: argparse.Namespace) -> pd.DataFrame:
        name = self.argument[0]
        options = {flag: getattr(args, flag) for flag in self.flags}
        return self.function(getattr(args, name), version=args.version, **options)


COMMANDS = (
    TableCommand("entities", "data entities as a DataFrame (PATTERN, --category, --version)",
                 ("pattern", PATTERN_HELP), entities, ("category",)),
    TableCommand("fields", "an entity's fields: types, key, mandatory, label, enumeration",
                 ("entity", ENTITY_HELP), fields),
    TableCommand("relations", "an entity's navigation properties (relations)",
                 ("entity", ENTITY_HELP), relations),
    TableCommand("enums", "enumerations with label and member count (PATTERN)",
                 ("pattern", PATTERN_HELP), enums),
    TableCommand("members", "an enumeration's members: value, label",
                 ("enum", "enumeration name, e.g. NoYes"), members),
    TableCommand("labels", "the labels a version uses: text, status (--missing)",
                 ("pattern", PATTERN_HELP), labels, ("missing",)),
)  # fmt: skip
