"""The recorded sync sessions of one environment: save, load (as ``SyncSession``), liveness."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any

from d365sync_nb.d365.request_log import REQUEST_COLUMNS, STORED_REQUEST_COLUMNS, RequestRow
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.models import (
    PHASES,
    HttpRecord,
    PhaseProgress,
    PhaseStatus,
    SyncPhase,
    SyncSession,
    SyncStatus,
    SyncStrategy,
    iso,
)
from d365sync_nb.store.database import Database, now_iso
from d365sync_nb.store.liveness import HOST, LIVE_SESSIONS, alive_elsewhere

SESSION_COLUMNS = (
    "session_id", "environment", "strategy", "status", "global_version_id", "initiated_by",
    "started_at", "completed_at", "error", "message", "counts_json", "requests", "pid", "host",
    "http_json",
)  # fmt: skip
# A save replaces these and keeps request_log_pruned (the store's own state of the session).
_SAVE_SESSION = (
    f"INSERT INTO sessions({', '.join(SESSION_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(SESSION_COLUMNS))}) ON CONFLICT(session_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SESSION_COLUMNS[1:])
)
_INSERT_REQUEST = (
    f"INSERT INTO requests({', '.join(STORED_REQUEST_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(STORED_REQUEST_COLUMNS))})"
)
PHASE_COLUMNS = (
    "session_id, phase, ordinal, status, items_processed, items_total, current_item,"
    " started_at, completed_at, error, weight, note"
)


class SessionHistory:
    """Sessions and their phases as recorded in the cache file (the persistent history)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, session: SyncSession) -> None:
        """Upsert a session and its phases, recording this process as the one running it."""
        with self.db.write() as conn:
            conn.execute(
                _SAVE_SESSION,
                (
                    session.session_id,
                    session.environment,
                    session.strategy.value,
                    session.status.value,
                    session.global_version_id,
                    session.initiated_by,
                    iso(session.started_at),
                    iso(session.completed_at),
                    session.error,
                    session.message,
                    json.dumps(session.counts),
                    session.http.requests,  # for files read by an older version
                    os.getpid(),
                    HOST,
                    session.http.model_dump_json(),
                ),
            )
            conn.executemany(
                f"INSERT OR REPLACE INTO session_phases({PHASE_COLUMNS})"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        session.session_id,
                        p.phase.value,
                        i,
                        p.status.value,
                        p.items_processed,
                        p.items_total,
                        p.current_item,
                        iso(p.started_at),
                        iso(p.completed_at),
                        p.error,
                        p.weight,
                        p.note,
                    )
                    for i, p in enumerate(session.phases.values())
                ],
            )

    def load(
        self,
        *,
        limit: int = 20,
        status: str | None = None,
        session_id: str | None = None,
        strategy: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        version: int | None = None,
    ) -> list[SyncSession]:
        """Recorded sessions, newest first, filtered by status, strategy, global version and
        start time (``since`` <= started_at < ``until``), or the one with an id."""
        filters: list[tuple[str, Any]] = [
            ("session_id = ?", session_id),
            ("status = ?", status),
            ("strategy = ?", strategy),
            ("global_version_id = ?", version),
            ("julianday(started_at) >= julianday(?)", iso(since)),
            ("julianday(started_at) < julianday(?)", iso(until)),
        ]
        used = [(sql, value) for sql, value in filters if value is not None]
        clause = f"WHERE {' AND '.join(sql for sql, _ in used)}" if used else ""
        rows = self.db.rows(
            f"SELECT * FROM sessions {clause} ORDER BY julianday(started_at) DESC LIMIT ?",
            [*(value for _, value in used), limit],
        )
        return [self._session(row) for row in rows]

    def get(self, session_id: str) -> SyncSession | None:
        sessions = self.load(session_id=session_id, limit=1)
        return sessions[0] if sessions else None

    def latest_id(self) -> str | None:
        """The id of the newest recorded session."""
        rows = self.db.rows(
            "SELECT session_id FROM sessions ORDER BY julianday(started_at) DESC LIMIT 1"
        )
        return str(rows[0][0]) if rows else None

    def ids_starting_with(self, prefix: str) -> list[str]:
        """Ids of recorded sessions that start with ``prefix``."""
        rows = self.db.rows(
            "SELECT session_id FROM sessions WHERE session_id >= ? AND session_id < ?",
            (prefix, prefix + "\uffff"),
        )
        return [str(r[0]) for r in rows]

    def count(self) -> int:
        return int(self.db.rows("SELECT count(*) FROM sessions")[0][0])

    def running_elsewhere(self) -> list[dict[str, Any]]:
        """Sessions recorded as running by another live process on this host
        (``session_id``, ``global_version_id``, ``pid``, ``host``)."""
        rows = self.db.rows(
            "SELECT session_id, global_version_id, pid, host FROM sessions WHERE status = 'running'"
        )
        return [dict(r) for r in rows if alive_elsewhere(r["pid"], r["host"])]

    def mark_interrupted(self, message: str) -> list[str]:
        """Sessions whose process has died become failed; returns their ids.

        A session this process or another live process on this host is running is left alone.
        """
        now = now_iso()
        with self.db.write() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT session_id, pid, host FROM sessions WHERE status = 'running'"
                ).fetchall()
                if r[0] not in LIVE_SESSIONS and not alive_elsewhere(r[1], r[2])
            ]
            conn.executemany(
                "UPDATE sessions SET status = 'failed', error = ?, completed_at = ?"
                " WHERE session_id = ?",
                [(message, now, i) for i in ids],
            )
            conn.executemany(
                "UPDATE session_phases SET status = 'failed', error = ?, completed_at = ?"
                " WHERE session_id = ? AND status = 'running'",
                [(message, now, i) for i in ids],
            )
        return ids

    def phase_seconds(self, strategy: str, limit: int = 5) -> dict[str, float]:
        """Average seconds per phase over the last completed sessions of a strategy (only
        phases that completed: skipped or reused ones say nothing about the work)."""
        rows = self.db.rows(
            "SELECT p.phase, avg((julianday(p.completed_at) - julianday(p.started_at)) * 86400)"
            " FROM session_phases p WHERE p.status = 'completed' AND p.session_id IN"
            " (SELECT session_id FROM sessions WHERE status = 'completed' AND strategy = ?"
            "  ORDER BY julianday(started_at) DESC LIMIT ?) GROUP BY p.phase",
            (strategy, limit),
        )
        return {r[0]: float(r[1]) for r in rows if r[1] is not None}

    # -- the request log ---------------------------------------------------------------
    def write_requests(self, session_id: str, rows: list[RequestRow]) -> None:
        """Append attempts to a session's request log (numbered in the order given)."""
        if not rows:
            return
        with self.db.write() as conn:
            start = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM requests WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            conn.executemany(
                _INSERT_REQUEST,
                [(session_id, start + i, *row) for i, row in enumerate(rows, 1)],
            )

    def requests(
        self, session_id: str, *, status: str | None = None, phase: str | None = None
    ) -> list[dict[str, Any]]:
        """A session's request log in the order sent; ``status`` is a code (``429``), a class
        (``5xx``), ``error`` (no usable answer) or ``retried``; ``phase`` a phase name."""
        where, params = ["session_id = ?"], [session_id]
        if phase is not None:
            where.append("phase = ?")
            params.append(phase)
        if status is not None:
            sql, value = _status_filter(status)
            where.append(sql)
            params += value
        rows = self.db.rows(
            f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE {' AND '.join(where)}"
            " ORDER BY seq",
            params,
        )
        return [_request_dict(row) for row in rows]

    def request_log_pruned(self, session_id: str) -> bool:
        """True once the session's request log was deleted by :meth:`prune_request_logs`."""
        rows = self.db.rows(
            "SELECT request_log_pruned FROM sessions WHERE session_id = ?", (session_id,)
        )
        return bool(rows and rows[0][0])

    def prune_request_logs(self, keep: int) -> int:
        """Keep the request logs of the ``keep`` most recent sessions (and of running ones),
        marking the others pruned; returns rows deleted."""
        older = (
            "SELECT session_id FROM sessions WHERE status != 'running' AND session_id NOT IN"
            " (SELECT session_id FROM sessions ORDER BY julianday(started_at) DESC LIMIT ?)"
        )
        with self.db.write() as conn:
            conn.execute(
                f"UPDATE sessions SET request_log_pruned = 1 WHERE session_id IN ({older})"
                " AND request_log_pruned = 0",
                (keep,),
            )
            cursor = conn.execute(f"DELETE FROM requests WHERE session_id IN ({older})", (keep,))
            return cursor.rowcount

    def _session(self, row: sqlite3.Row) -> SyncSession:
        """Rebuild a SyncSession from its stored row and its phases' rows."""
        phases = {p: PhaseProgress(phase=p) for p in PHASES}
        for p in self.db.rows(
            "SELECT * FROM session_phases WHERE session_id = ? ORDER BY ordinal",
            (row["session_id"],),
        ):
            phase = SyncPhase(p["phase"])
            phases[phase] = PhaseProgress(
                phase=phase,
                status=PhaseStatus(p["status"]),
                items_processed=p["items_processed"],
                items_total=p["items_total"],
                current_item=p["current_item"],
                started_at=_datetime(p["started_at"]),
                completed_at=_datetime(p["completed_at"]),
                error=p["error"],
                note=p["note"],
                weight=p["weight"] or 1.0,
            )
        current = next(
            (
                phase
                for phase, progress in phases.items()
                if progress.status
                in (PhaseStatus.RUNNING, PhaseStatus.FAILED, PhaseStatus.CANCELLED)
            ),
            None,
        )
        started_at = _datetime(row["started_at"])
        assert started_at is not None  # NOT NULL in the schema
        return SyncSession(
            session_id=row["session_id"],
            environment=row["environment"],
            strategy=SyncStrategy(row["strategy"]),
            status=SyncStatus(row["status"]),
            global_version_id=row["global_version_id"],
            initiated_by=row["initiated_by"] or "user",
            started_at=started_at,
            completed_at=_datetime(row["completed_at"]),
            current_phase=current,
            phases=phases,
            counts=json.loads(row["counts_json"] or "{}"),
            error=row["error"],
            message=row["message"],
            http=HttpRecord.model_validate_json(row["http_json"])
            if row["http_json"]
            else HttpRecord(requests=row["requests"] or 0),
        )


def _datetime(value: str | None) -> datetime | None:
    """A stored timestamp: ``...Z`` now, ``...+00:00`` in files written before."""
    return datetime.fromisoformat(value) if value else None


def _status_filter(status: str) -> tuple[str, list[Any]]:
    text = str(status).strip().lower()
    if text.isdigit() and 100 <= int(text) <= 599:
        return "status = ?", [int(text)]
    if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
        low = int(text[0]) * 100
        return "status >= ? AND status < ?", [low, low + 100]
    if text == "error":
        return "error IS NOT NULL", []
    if text == "retried":
        return "retry_cause IS NOT NULL", []
    raise ConfigurationError(
        f"Unknown status filter {str(status)[:20]!r}: give a code from 100 to 599 (429), a class "
        "(5xx), 'error' or 'retried'"
    )


def _request_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["started_at"] = iso(datetime.fromtimestamp(data["started_at"], UTC))
    return data
