"""The views operations return: UI-free objects that each surface only lays out.

Every view has ``text()`` (the terminal's layout, also a notebook's plain-text fallback),
``to_json()`` (the ``--json`` answer) and ``title`` (a line said before the text, or None);
a table view has ``columns`` and ``rows()`` (``--csv``, a DataFrame).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from d365sync_nb import render
from d365sync_nb.d365.request_log import REQUEST_COLUMNS
from d365sync_nb.diagnostics import Diagnosis
from d365sync_nb.explorer import Diff, Table
from d365sync_nb.explorer.table import write_csv
from d365sync_nb.models import SyncSession


def csv_text(columns: list[str] | tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    """A table as CSV with a header row (the one CSV writer of every table view)."""
    buffer = io.StringIO()
    write_csv(buffer, list(columns), [[row.get(c) for c in columns] for row in rows])
    return buffer.getvalue()


@dataclass
class SessionsView:
    """Sessions, newest first (history, running sessions)."""

    sessions: list[SyncSession]
    title: str | None = None
    columns = ("session_id", "started_at", "strategy", "status", "version", "seconds",
               "requests", "labels", "error")  # fmt: skip

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "session_id": s.session_id,
                "started_at": s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                "strategy": s.strategy.value,
                "status": s.status.value,
                "version": s.global_version_id,
                "seconds": s.duration_seconds,
                "requests": s.http.requests,
                "labels": s.counts.get("labels"),
                "error": s.error,
            }
            for s in self.sessions
        ]

    def text(self) -> str:
        return render.table(self.rows(), self.columns)

    def to_json(self) -> Any:
        return [s.to_dict() for s in self.sessions]


@dataclass
class RequestLogView:
    """A session's request log, one row per attempt in the order sent."""

    session: SyncSession
    log: list[dict[str, Any]]
    table_columns = ("seq", "time", "phase", "endpoint", "status", "error", "attempt", "ms",
                     "bytes", "retry", "activity_id")  # fmt: skip

    @property
    def columns(self) -> list[str]:
        return list(self.log[0]) if self.log else list(REQUEST_COLUMNS)

    @property
    def title(self) -> str:
        total = self.session.http.requests
        return f"Session {self.session.session_id}: {len(self.log):,} of {total:,} attempts"

    def rows(self) -> list[dict[str, Any]]:
        return self.log

    def text(self) -> str:
        return render.table([_request_cells(row) for row in self.log], self.table_columns)

    def to_json(self) -> Any:
        return self.log


def _request_cells(row: dict[str, Any]) -> dict[str, Any]:
    """A request-log row as the text table shows it (the time of day, short headings)."""
    started = row["started_at"] or ""
    return {
        **row,
        "time": started[11:23] if "T" in started else started,
        "ms": row["latency_ms"],
        "retry": row["retry_cause"],
    }


@dataclass
class DiagnosisResult:
    """A session's diagnosis with the session and its request log (None once pruned)."""

    diagnosis: Diagnosis
    session: SyncSession
    log: list[dict[str, Any]] | None
    title = None

    def text(self) -> str:
        return str(self.diagnosis)

    def to_json(self) -> Any:
        return self.diagnosis.to_dict()


@dataclass
class ComparisonView:
    """Two sessions phase by phase (``diagnostics.compare`` rows) with a total line."""

    a: SyncSession
    b: SyncSession
    phases: list[dict[str, Any]]
    title = None

    @property
    def columns(self) -> list[str]:
        return list(self.phases[0]) if self.phases else ["phase"]

    def rows(self) -> list[dict[str, Any]]:
        return self.phases

    def text(self) -> str:
        return render.compare_text(self.a, self.b, self.phases)

    def to_json(self) -> Any:
        return {"a": self.a.session_id, "b": self.b.session_id, "phases": self.phases}


@dataclass
class SearchView:
    """Search hits, best first."""

    hits: list[dict[str, Any]]
    title = None
    columns = ("kind", "name", "label", "parent", "score")

    def rows(self) -> list[dict[str, Any]]:
        return self.hits

    def text(self) -> str:
        return render.table(self.hits)

    def to_json(self) -> Any:
        return self.hits


@dataclass
class PhasesView:
    """One row per phase of a session."""

    session: SyncSession
    title = None
    columns = ("phase", "status", "items_processed", "items_total", "seconds", "note", "error")

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "phase": p.phase.value,
                "status": p.status.value,
                "items_processed": p.items_processed,
                "items_total": p.items_total,
                "seconds": p.seconds,
                "note": p.note,
                "error": p.error,
            }
            for p in self.session.phases.values()
        ]

    def text(self) -> str:
        return render.session_report(self.session)

    def to_json(self) -> Any:
        return {"session_id": self.session.session_id, "phases": self.rows()}


@dataclass
class TableResult:
    """An explorer table: its title (with the row count) and its rows."""

    table: Table

    @property
    def title(self) -> str:
        return f"{self.table.title}: {len(self.table):,} rows"

    @property
    def columns(self) -> list[str]:
        return self.table.column_names

    def rows(self) -> list[dict[str, Any]]:
        return self.table.records()

    def text(self) -> str:
        if not self.table.rows:
            return "(none)"
        return render.table(self.table.records(), self.table.column_names)

    def to_json(self) -> Any:
        return self.table.records()

    def csv(self) -> str:
        return self.table.to_csv()


@dataclass
class DiffResult:
    """A diff: its title and summary line, then one row per change."""

    diff: Diff
    title = None

    @property
    def heading(self) -> str:
        return f"{self.diff.title}: {self.diff.summary_text}"

    @property
    def columns(self) -> list[str]:
        return self.diff.table().column_names

    def rows(self) -> list[dict[str, Any]]:
        return self.diff.table().records()

    def text(self) -> str:
        lines = [self.heading]
        if self.diff.changes:
            table = self.diff.table()
            lines.append(render.table(table.records(), table.column_names))
        return "\n".join(lines)

    def to_json(self) -> Any:
        return self.diff.to_dict()

    def csv(self) -> str:
        return self.diff.table().to_csv()


@dataclass
class ExportView:
    """The files an export wrote, with their row counts."""

    written: list[dict[str, Any]]
    title = None
    columns = ("table", "rows", "path", "replaced")  # replaced: a file of that name was there

    def rows(self) -> list[dict[str, Any]]:
        return self.written

    def text(self) -> str:
        replaced = sum(1 for w in self.written if w.get("replaced"))
        said = f"\nreplaced {replaced} existing file(s)" if replaced else ""
        return render.table(self.written, self.columns) + said

    def to_json(self) -> Any:
        return self.written
