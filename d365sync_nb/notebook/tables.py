"""pandas views of sessions: history, phases, running sessions, search hits.

Timestamps are tz-aware (UTC), durations are timedeltas, status/strategy/phase are categoricals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

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
    "items",
    "items_per_second",
    "initiated_by",
    "error",
]


def _utc(values: Iterable[datetime | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True), dtype="datetime64[us, UTC]")


def _seconds(values: Iterable[float | None]) -> pd.Series:
    return pd.Series(pd.to_timedelta(list(values), unit="s"), dtype="timedelta64[us]")


def history_frame(sessions: Sequence[SyncSession]) -> pd.DataFrame:
    """One row per session, newest first; ``<phase>_items``/``<phase>_seconds`` per phase."""
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
            "requests": s.requests,
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
    for column in ("requests", "items", *(f"{p.value}_items" for p in PHASES)):
        frame[column] = frame[column].astype("int64")
    for column in ("items_per_second", *(f"{p.value}_seconds" for p in PHASES)):
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
