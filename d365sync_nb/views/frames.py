"""pandas views of sessions (history, phases, running sessions, search hits, a session's request
log, two sessions compared) and of the metadata explorer's tables and diffs.

Timestamps are tz-aware (UTC), durations are timedeltas, status/strategy/phase are categoricals,
HTTP status codes nullable integers (``<NA>``: no complete answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from d365sync_nb import diagnostics
from d365sync_nb.d365.request_log import REQUEST_COLUMNS, REQUEST_ERRORS
from d365sync_nb.explorer import Diff, Table
from d365sync_nb.explorer.diff import CHANGES, DIFF_COLUMNS, KIND_NAMES
from d365sync_nb.models import (
    PHASES,
    PhaseStatus,
    SyncSession,
    SyncStatus,
    SyncStrategy,
)

STATUS_DTYPE = pd.CategoricalDtype([s.value for s in SyncStatus])
STRATEGY_DTYPE = pd.CategoricalDtype([s.value for s in SyncStrategy])
PHASE_DTYPE = pd.CategoricalDtype([p.value for p in PHASES], ordered=True)
PHASE_STATUS_DTYPE = pd.CategoricalDtype([s.value for s in PhaseStatus])

HISTORY_COLUMNS = [
    "session_id",
    "strategy",
    "status",
    "global_version_id",
    "started_at",
    "completed_at",
    "duration",
    "requests",
    "retries",
    "throttled",
    "transport_errors",
    "retry_wait_seconds",
    "items",
    "items_per_second",
    "initiated_by",
    "error",
]
HTTP_COUNTS = ("retries", "throttled", "transport_errors")  # history columns from session.http


def _utc(values: Iterable[datetime | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True), dtype="datetime64[us, UTC]")


def _seconds(values: Iterable[float | None]) -> pd.Series:
    return pd.Series(pd.to_timedelta(list(values), unit="s"), dtype="timedelta64[us]")


def history_frame(sessions: Sequence[SyncSession]) -> pd.DataFrame:
    """One row per session, newest first; ``<phase>_items``/``<phase>_seconds`` per phase.

    ``retries``, ``throttled`` (429 answers), ``transport_errors`` (attempts without a usable
    answer) and ``retry_wait_seconds`` (waits before retries, summed) come from each
    session's ``http`` record."""
    rows: list[dict[str, Any]] = []
    for s in sessions:
        items = sum(p.items_processed for p in s.phases.values())
        row: dict[str, Any] = {
            "session_id": s.session_id,
            "strategy": s.strategy.value,
            "status": s.status.value,
            "global_version_id": s.global_version_id,
            "started_at": s.started_at,
            "completed_at": s.completed_at,
            "duration": s.duration_seconds,
            "requests": s.http.requests,
            "retries": s.http.retries,
            "throttled": s.http.throttled,
            "transport_errors": s.http.transport_errors,
            "retry_wait_seconds": s.http.retry_wait_seconds,
            "items": items,
            "items_per_second": round(items / s.duration_seconds, 1)
            if s.duration_seconds
            else None,
            "initiated_by": s.initiated_by,
            "error": s.error,
        }
        for phase, p in s.phases.items():
            row[f"{phase.value}_items"] = p.items_processed
        for phase, p in s.phases.items():
            row[f"{phase.value}_seconds"] = p.seconds
        rows.append(row)
    phase_columns = [f"{p.value}_items" for p in PHASES] + [f"{p.value}_seconds" for p in PHASES]
    frame = pd.DataFrame(rows, columns=[*HISTORY_COLUMNS, *phase_columns])
    frame["strategy"] = frame["strategy"].astype(STRATEGY_DTYPE)
    frame["status"] = frame["status"].astype(STATUS_DTYPE)
    frame["global_version_id"] = frame["global_version_id"].astype("Int64")
    frame["started_at"] = _utc(frame["started_at"])
    frame["completed_at"] = _utc(frame["completed_at"])
    frame["duration"] = _seconds(frame["duration"])
    for column in ("requests", *HTTP_COUNTS, "items", *(f"{p.value}_items" for p in PHASES)):
        frame[column] = frame[column].astype("int64")
    floats = ("retry_wait_seconds", "items_per_second", *(f"{p.value}_seconds" for p in PHASES))
    for column in floats:
        frame[column] = frame[column].astype("float64")
    return frame


def phases_frame(session: SyncSession) -> pd.DataFrame:
    """One row per phase, in order: status, start, end, seconds, items, items per second, error."""
    rows = [
        {
            "phase": p.phase.value,
            "status": p.status.value,
            "start": p.started_at,
            "end": p.completed_at,
            "seconds": p.seconds,
            "items": p.items_processed,
            "items_total": p.items_total,
            "items_per_second": p.items_per_second,
            "error": p.error,
        }
        for p in session.phases.values()
    ]
    frame = pd.DataFrame(rows)
    frame["phase"] = frame["phase"].astype(PHASE_DTYPE)
    frame["status"] = frame["status"].astype(PHASE_STATUS_DTYPE)
    frame["start"] = _utc(frame["start"])
    frame["end"] = _utc(frame["end"])
    frame["seconds"] = frame["seconds"].astype("float64")
    frame["items"] = frame["items"].astype("int64")
    frame["items_total"] = frame["items_total"].astype("Int64")
    frame["items_per_second"] = frame["items_per_second"].astype("float64")
    frame.attrs["session_id"] = session.session_id
    frame.attrs["strategy"] = session.strategy.value
    frame.attrs["status"] = session.status.value
    return frame


def sessions_frame(sessions: Sequence[SyncSession]) -> pd.DataFrame:
    """Running sessions: progress, current phase and item, ETA, throughput."""
    rows = [
        {
            "session_id": s.session_id,
            "strategy": s.strategy.value,
            "status": s.status.value,
            "global_version_id": s.global_version_id,
            "progress_percent": s.progress_percent,
            "current_phase": s.current_phase.value if s.current_phase else None,
            "current_item": s.phases[s.current_phase].current_item if s.current_phase else None,
            "eta": s.estimated_remaining_seconds,
            "items_per_second": s.items_per_second,
            "started_at": s.started_at,
            "elapsed": s.duration_seconds,
            "initiated_by": s.initiated_by,
        }
        for s in sessions
    ]
    columns = [
        "session_id",
        "strategy",
        "status",
        "global_version_id",
        "progress_percent",
        "current_phase",
        "current_item",
        "eta",
        "items_per_second",
        "started_at",
        "elapsed",
        "initiated_by",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame["strategy"] = frame["strategy"].astype(STRATEGY_DTYPE)
    frame["status"] = frame["status"].astype(STATUS_DTYPE)
    frame["current_phase"] = frame["current_phase"].astype(PHASE_DTYPE)
    frame["global_version_id"] = frame["global_version_id"].astype("Int64")
    frame["progress_percent"] = frame["progress_percent"].astype("float64")
    frame["items_per_second"] = frame["items_per_second"].astype("float64")
    frame["eta"] = _seconds(frame["eta"])
    frame["elapsed"] = _seconds(frame["elapsed"])
    frame["started_at"] = _utc(frame["started_at"])
    return frame


def search_frame(hits: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Search hits, best first: kind, name, label, parent, score (lower is better, bm25)."""
    frame = pd.DataFrame(list(hits), columns=["kind", "name", "label", "parent", "score"])
    frame["kind"] = frame["kind"].astype("category")
    frame["score"] = frame["score"].astype("float64")
    return frame


def requests_frame(
    rows: Sequence[dict[str, Any]], session: SyncSession | None = None
) -> pd.DataFrame:
    """A session's request log, one row per attempt in the order sent (see
    ``manager.get_request_log``): tz-aware ``started_at``; categorical ``phase`` (ordered),
    ``endpoint``, ``error`` and ``retry_cause``; ``status`` as nullable Int64 (``<NA>`` when no
    complete answer came); ``latency_ms`` float; ``attempt`` 1 for a first try.

    With ``session``, ``attrs`` carry what the charts need beside the rows: ``session_id``,
    ``session_started_at`` (the origin of the limiter's concurrency changes) and
    ``concurrency`` (``session.http.concurrency``).
    """
    frame = pd.DataFrame(list(rows), columns=list(REQUEST_COLUMNS))
    frame["seq"] = frame["seq"].astype("int64")
    frame["started_at"] = pd.Series(
        pd.to_datetime(frame["started_at"], utc=True, format="ISO8601"),
        index=frame.index,
        dtype="datetime64[us, UTC]",
    )
    frame["phase"] = frame["phase"].astype(PHASE_DTYPE)
    frame["endpoint"] = frame["endpoint"].astype("category")
    frame["status"] = frame["status"].astype("Int64")
    unknown = sorted(set(frame["error"].dropna()) - set(REQUEST_ERRORS))  # a kind added later
    frame["error"] = frame["error"].astype(pd.CategoricalDtype([*REQUEST_ERRORS, *unknown]))
    frame["attempt"] = frame["attempt"].astype("int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    frame["bytes"] = frame["bytes"].astype("int64")
    frame["retry_cause"] = frame["retry_cause"].astype("category")
    frame["request_id"] = frame["request_id"].astype("string")
    frame["activity_id"] = frame["activity_id"].astype("string")
    if session is not None:
        frame.attrs["session_id"] = session.session_id
        frame.attrs["session_started_at"] = pd.Timestamp(session.started_at)
        frame.attrs["session_ended_at"] = (
            pd.Timestamp(session.completed_at) if session.completed_at else None
        )
        frame.attrs["concurrency"] = session.http.concurrency
    return frame


def compare_frame(rows: Sequence[dict[str, Any]], a: SyncSession, b: SyncSession) -> pd.DataFrame:
    """Two sessions phase by phase (rows of ``diagnostics.compare``): ``a_*`` and ``b_*``
    columns side by side, ``seconds_ratio`` and ``requests_ratio`` (b / a; NaN where a is 0).
    ``attrs``: ``a`` and ``b`` (the session ids)."""
    columns = ["phase"]
    for key in diagnostics.COMPARED:
        columns += [f"a_{key}", f"b_{key}"]
        if key in ("seconds", "requests"):
            columns.append(f"{key}_ratio")
    frame = pd.DataFrame(list(rows), columns=columns)
    frame["phase"] = frame["phase"].astype(PHASE_DTYPE)
    for side in ("a", "b"):
        frame[f"{side}_status"] = frame[f"{side}_status"].astype(PHASE_STATUS_DTYPE)
        frame[f"{side}_seconds"] = frame[f"{side}_seconds"].astype("float64")
        for key in ("requests", "retries", "throttled", "items"):
            frame[f"{side}_{key}"] = frame[f"{side}_{key}"].astype("int64")
    for ratio in ("seconds_ratio", "requests_ratio"):
        frame[ratio] = frame[ratio].astype("float64")
    frame.attrs["a"] = a.session_id
    frame.attrs["b"] = b.session_id
    return frame


def metadata_frame(table: Table) -> pd.DataFrame:
    """An explorer table with nullable dtypes (``string``, ``boolean``, ``Int64``): a missing
    value stays ``<NA>``; low-cardinality text (category, data type) is categorical."""
    frame = pd.DataFrame(table.rows, columns=table.column_names, dtype=object)
    for column in table.columns:
        dtype = CATEGORICAL.get(column.name) or column.dtype
        frame[column.name] = frame[column.name].astype(dtype)
    frame.attrs["title"] = table.title
    return frame


CATEGORICAL = {"category": "category", "data_type": "category", "status": "category"}


def diff_frame(diff: Diff) -> pd.DataFrame:
    """The changes of a diff: kind and change categorical, before/after as the values were
    (booleans, numbers, text); ``attrs`` hold the summary, title and both versions."""
    frame = pd.DataFrame(diff.changes, columns=[c.name for c in DIFF_COLUMNS])
    frame["kind"] = frame["kind"].astype(pd.CategoricalDtype(KIND_NAMES, ordered=True))
    frame["change"] = frame["change"].astype(pd.CategoricalDtype(CHANGES))
    for name in ("parent", "name", "attribute"):
        frame[name] = frame[name].astype("string")
    brief = diff.to_dict(limit=0)
    frame.attrs.update(
        summary=diff.summary,
        summary_text=diff.summary_text,
        title=diff.title,
        **{key: brief[f"{key}_version"] for key in ("from", "to")},
    )
    return frame


CHECK_COLUMNS = [
    "checked_at", "action", "global_version_id", "application_version", "previous_version_id",
    "session_id", "notified", "notify_failed", "seconds", "reason", "error",
]  # fmt: skip


def checks_frame(checks: Sequence[Any]) -> pd.DataFrame:
    """A watch's version checks (``CheckRecord``s), newest first, one row each."""
    rows = [{k: v for k, v in c.to_dict().items() if k in CHECK_COLUMNS} for c in checks]
    frame = pd.DataFrame(rows, columns=CHECK_COLUMNS)
    frame["checked_at"] = pd.to_datetime(frame["checked_at"], utc=True, format="ISO8601")
    for column in ("global_version_id", "previous_version_id"):
        frame[column] = frame[column].astype("Int64")
    return frame
