"""Export one version's tables to a directory: one CSV or Parquet file per table.

Parquet needs pyarrow (``pip install 'd365sync_nb[parquet]'``); without it the export stops
with that instruction before writing anything. Each file is written to a new temporary file in
the directory (``tempfile``: created exclusively, never through a link planted there) and
renamed into place (replacing a link, never writing through it), so a failed export never leaves
a half-written file under the real name. Each entry says whether it replaced an existing file.
CSV cells that a spreadsheet would run as formulas are prefixed with ``'`` (``table.csv_cell``).
"""

from __future__ import annotations

import io
import os
import tempfile
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
    ``{"table", "path", "rows", "replaced"}`` per file (``replaced``: a file of that name was
    there before)."""
    if not str(directory).strip():
        raise ConfigurationError("The export directory is empty: give a directory path")
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
        replaced = os.path.lexists(path)
        partial: str | None = None
        try:
            fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=target)
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the export from other readers
            with os.fdopen(fd, "wb") as stream:
                writer(table, stream)
            os.replace(partial, path)
        except Exception as exc:  # OSError, or pyarrow's own errors
            if partial is not None:
                Path(partial).unlink(missing_ok=True)
            reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [""])[0]
            raise CacheError(f"Cannot write {path}: {reason}") from None
        written.append(
            {"table": table.name, "path": str(path), "rows": len(table), "replaced": replaced}
        )
    return written


def _write_csv(table: Table, stream: Any) -> None:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    write_csv(text, table.column_names, table.rows)
    text.flush()
    text.detach()


def _parquet_writer() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigurationError(PARQUET_HINT) from None
    types = {"string": pa.string(), "boolean": pa.bool_(), "Int64": pa.int64(),
             "Float64": pa.float64()}  # fmt: skip

    def write(table: Table, path: Any) -> None:
        schema = pa.schema([(c.name, types[c.dtype]) for c in table.columns])
        data = {c.name: [row[i] for row in table.rows] for i, c in enumerate(table.columns)}
        pq.write_table(pa.Table.from_pydict(data, schema=schema), path)

    return write
