"""The explorer's ``d365sync`` commands: entities, fields, relations, enums, members, labels,
diff and export. Each prints a text table (its title on stderr), or ``--json`` / ``--csv``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from d365sync_nb import render
from d365sync_nb.connection import add_connection_arguments, cache_file_of, connect_from_args
from d365sync_nb.explorer import MetadataExplorer, Table
from d365sync_nb.explorer.export import FORMATS

VERSION_HELP = "a version id (as in history) or application version, e.g. 10.0.42 (default: latest)"
PATTERN_HELP = "case-insensitive substring, or a glob such as 'Cust*V3'"

# name: (help, positional (name, help) or None, extra options)
TABLES: dict[str, tuple[str, tuple[str, str] | None, str]] = {
    "entities": ("data entities: names, category, flags, field count, label",
                 ("pattern", PATTERN_HELP), "category"),
    "fields": ("an entity's fields: type, key, mandatory, label, enumeration",
               ("entity", "data entity, public entity or collection name"), ""),
    "relations": ("an entity's navigation properties (relations)",
                  ("entity", "data entity, public entity or collection name"), ""),
    "enums": ("enumerations with their label and member count", ("pattern", PATTERN_HELP), ""),
    "members": ("an enumeration's members: value and label", ("enum", "enumeration name"), ""),
    "labels": ("the labels a version uses: text and status", ("pattern", PATTERN_HELP),
               "missing"),
}  # fmt: skip


def add_commands(sub: Any) -> None:
    """Add the explorer's subcommands to the ``d365sync`` parser."""
    for name, (text, positional, extra) in TABLES.items():
        parser = sub.add_parser(name, help=text)
        if positional:
            arg, arg_help = positional
            optional = arg == "pattern"
            parser.add_argument(arg, nargs="?" if optional else None, help=arg_help)
        if extra == "category":
            parser.add_argument("--category", help="only this entity category, e.g. Master")
        if extra == "missing":
            parser.add_argument("--missing", action="store_true", help="only labels without a text")
        parser.add_argument("--version", help=VERSION_HELP)
        _output_arguments(parser)
        add_connection_arguments(parser, scale_default="small")

    diff = sub.add_parser("diff", help="what changed between two versions or environments")
    diff.add_argument(
        "--from",
        dest="from_version",
        metavar="V",
        help="default: the older of the two latest synced versions (with --against: this "
        "environment's current one)",
    )
    diff.add_argument("--to", dest="to_version", metavar="V", help="default: the latest")
    diff.add_argument(
        "--against",
        metavar="ENV",
        help="compare with another environment's cache: a profile, base URL or cache file",
    )
    _output_arguments(diff, json_help='{"from", "to", "changes": [...], "summary": {...}}')
    add_connection_arguments(diff, scale_default="small")

    export = sub.add_parser("export", help="write a version's tables to a directory")
    export.add_argument("directory", metavar="DIR")
    export.add_argument("--version", help=VERSION_HELP)
    export.add_argument("--format", default="csv", choices=FORMATS, help="csv (default) or "
                        "parquet (needs pyarrow: pip install 'd365sync_nb[parquet]')")  # fmt: skip
    export.add_argument("--json", action="store_true", help="the files written, as JSON")
    add_connection_arguments(export, scale_default="small")


def _output_arguments(parser: argparse.ArgumentParser, json_help: str = "a JSON list") -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help=json_help)
    output.add_argument("--csv", action="store_true", help="CSV with a header row")


def _table(args: argparse.Namespace) -> int:
    def query(explorer: MetadataExplorer) -> Table:
        v = args.version
        if args.command == "entities":
            return explorer.entities(args.pattern, version=v, category=args.category)
        if args.command == "fields":
            return explorer.fields(args.entity, version=v)
        if args.command == "relations":
            return explorer.relations(args.entity, version=v)
        if args.command == "enums":
            return explorer.enums(args.pattern, version=v)
        if args.command == "members":
            return explorer.members(args.enum, version=v)
        return explorer.labels(args.pattern, missing=args.missing, version=v)

    with connect_from_args(args) as conn:
        print_table(query(conn.manager.explorer), args)
    return 0


def print_table(table: Table, args: argparse.Namespace) -> None:
    """The table as JSON, CSV, or text with its title and row count on stderr."""
    if args.json:
        print(table.to_json())
    elif args.csv:
        sys.stdout.write(table.to_csv())
    else:
        print(f"{table.title}: {len(table):,} rows", file=sys.stderr)
        print(render.table(table.records(), table.column_names) if table.rows else "(none)")


def _diff(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        explorer = conn.manager.explorer
        if args.against is not None:
            other = cache_file_of(args.against, conn.settings.resolved_cache_dir())
            result = explorer.diff_against(
                other, version=args.from_version, other_version=args.to_version
            )
        else:
            result = explorer.diff(args.from_version, args.to_version)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    elif args.csv:
        sys.stdout.write(result.table().to_csv())
    else:
        print(f"{result.title}: {result.summary_text}")
        if result.changes:
            table = result.table()
            print(render.table(table.records(), table.column_names))
    return 0


def _export(args: argparse.Namespace) -> int:
    with connect_from_args(args) as conn:
        written = conn.manager.explorer.export(args.directory, args.format, version=args.version)
    if replaced := sum(1 for w in written if w.get("replaced")):
        print(f"d365sync: replaced {replaced} existing file(s) in {args.directory}",
              file=sys.stderr)  # fmt: skip
    if args.json:
        print(json.dumps(written))
    else:
        print(render.table(written, ("table", "rows", "path")))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    **dict.fromkeys(TABLES, _table),
    "diff": _diff,
    "export": _export,
}
