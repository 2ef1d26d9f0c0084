"""A table of cached metadata: named, typed columns and rows, ready for pandas, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Dtype = Literal["string", "boolean", "Int64", "Float64"]


@dataclass(frozen=True)
class Column:
    """One column: its name and the pandas dtype it becomes (nullable types: NULL stays NA)."""

    name: str
    dtype: Dtype = "string"


def columns(spec: str) -> tuple[Column, ...]:
    """``"name entity:string is_key:boolean fields:Int64"`` as columns (string by default)."""
    out = []
    for word in spec.split():
        name, _, dtype = word.partition(":")
        out.append(Column(name, dtype or "string"))  # type: ignore[arg-type]
    return tuple(out)


@dataclass
class Table:
    """Rows of one kind of metadata; ``title`` says what they are (shown above the table)."""

    name: str
    columns: tuple[Column, ...]
    rows: list[tuple[Any, ...]]
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def records(self) -> list[dict[str, Any]]:
        """One dict per row (booleans as ``True``/``False``, missing values as ``None``)."""
        names = self.column_names
        return [dict(zip(names, row, strict=True)) for row in self.rows]

    def to_json(self) -> str:
        return json.dumps(self.records(), ensure_ascii=False)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        write_csv(buffer, self.column_names, self.rows)
        return buffer.getvalue()

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def from_rows(
        cls, name: str, cols: tuple[Column, ...], rows: Sequence[Sequence[Any]], title: str = ""
    ) -> Table:
        """A table of database rows: SQLite's 0/1 become booleans in boolean columns."""
        flags = [i for i, c in enumerate(cols) if c.dtype == "boolean"]
        out: list[tuple[Any, ...]] = []
        for row in rows:
            values = list(row)
            for i in flags:
                if values[i] is not None:
                    values[i] = bool(values[i])
            out.append(tuple(values))
        return cls(name, cols, out, title)


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def write_csv(stream: Any, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """CSV with a header row; booleans as ``true``/``false``, missing values empty, and a text
    that a spreadsheet would run as a formula prefixed with ``'`` (:func:`csv_cell`)."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([csv_cell(n) for n in names])
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])


def csv_cell(value: Any) -> Any:
    """One CSV cell: booleans as ``true``/``false``, None empty, and text beginning with ``=``,
    ``+``, ``-``, ``@``, TAB or CR prefixed with ``'`` so a spreadsheet shows it instead of
    running it (every CSV the package writes; Parquet and JSON keep the text as it is)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
