"""Export one version's tables to a directory: one CSV or Parquet file per table.

Parquet needs pyarrow (``pip install 'd365sync_nb[parquet]'``); without it the export stops
with that instruction before writing anything. Each file is written beside its final name and
renamed into place, so a failed export never leaves a half-written file under the real name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from d365sync_nb.errors import CacheError, ConfigurationError
from d365sync_nb.explorer.catalog import Catalog
from d365sync_nb.explorer.table import Table, write_csv

FORMATS = ("csv", "parquet")
PARQUET_HINT = "Parquet export needs pyarrow: pip install 'd365sync_nb[parquet]' (or use csv)"


def export_tables(catalog: Catalog) -> list[Table]:
    """Every table of a version, as the export writes them."""
    return [
        catalog.entities(),
        catalog.all_fields(),
        catalog.all_relations(),
        catalog.all_actions(),
        catalog.enums(),
        catalog.all_members(),
        catalog.labels(),
    ]


def export(catalog: Catalog, directory: str | Path, fmt: str = "csv") -> list[dict[str, Any]]:
    """Write the tables of ``catalog`` to ``directory`` (created when missing); returns one
    ``{"table", "path", "rows"}`` per file."""
    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS:
        raise ConfigurationError(f"Unknown export format {fmt!r}: use csv or parquet")
    writer = _parquet_writer() if fmt == "parquet" else _write_csv
    target = Path(directory).expanduser()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"Cannot create the export directory {target}: {exc.strerror}") from None
    written = []
    for table in export_tables(catalog):
        path = target / f"{table.name}.{fmt}"
        partial = path.with_name(f".{path.name}.partial")
        try:
            writer(table, partial)
            os.replace(partial, path)
        except Exception as exc:  # OSError, or pyarrow's own errors
            partial.unlink(missing_ok=True)
            reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
            raise CacheError(f"Cannot write {path}: {reason}") from None
        written.append({"table": table.name, "path": str(path), "rows": len(table)})
    return written


def _write_csv(table: Table, path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        write_csv(stream, table.column_names, table.rows)


def _parquet_writer() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigurationError(PARQUET_HINT) from None
    types = {"string": pa.string(), "boolean": pa.bool_(), "Int64": pa.int64(),
             "Float64": pa.float64()}  # fmt: skip

    def write(table: Table, path: Path) -> None:
        schema = pa.schema([(c.name, types[c.dtype]) for c in table.columns])
        data = {c.name: [row[i] for row in table.rows] for i, c in enumerate(table.columns)}
        pq.write_table(pa.Table.from_pydict(data, schema=schema), path)

    return write
