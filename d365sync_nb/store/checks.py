"""The version checks of one environment's watch, kept with its session history."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from d365sync_nb.errors import ConfigurationError
from d365sync_nb.models import iso, utcnow
from d365sync_nb.store.database import Database


class CheckAction(StrEnum):
    """What a check did."""

    SYNCED = "synced"  # a sync ran and completed
    UP_TO_DATE = "up_to_date"  # nothing to do
    FAILED = "failed"  # the check or its sync failed
    CANCELLED = "cancelled"  # its sync was cancelled (the watch was stopped)
    SKIPPED_RUNNING = "skipped_running"  # another watcher or a sync holds the environment
    BACKING_OFF = "backing_off"  # a sync is due, but the last one failed too recently


@dataclass
class CheckRecord:
    """One check: when, what version the environment runs, what was done about it."""

    environment: str
    action: CheckAction
    checked_at: datetime = field(default_factory=utcnow)
    global_version_id: int | None = None
    application_version: str | None = None
    platform_version: str | None = None
    previous_version_id: int | None = None  # the cache's current complete version before
    reason: str | None = None
    strategy: str | None = None
    session_id: str | None = None
    error: str | None = None
    notified: int = 0  # notifications delivered
    notify_failed: int = 0  # notifications that failed after their retries
    seconds: float | None = None  # the check's duration, its sync included
    id: int | None = None

    @property
    def version_changed(self) -> bool:
        return self.global_version_id is not None and (
            self.global_version_id != self.previous_version_id
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = self.action.value
        data["checked_at"] = iso(self.checked_at)
        return data


COLUMNS = (
    "checked_at", "environment", "action", "global_version_id", "application_version",
    "platform_version", "previous_version_id", "reason", "strategy", "session_id", "error",
    "notified", "notify_failed", "seconds",
)  # fmt: skip


class CheckHistory:
    """The ``checks`` table: record a check, read them back newest first."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, check: CheckRecord) -> int:
        """Insert a check; returns its id (also set on ``check``)."""
        values = check.to_dict()
        marks = ", ".join("?" * len(COLUMNS))
        with self.db.write() as conn:
            cursor = conn.execute(
                f"INSERT INTO checks({', '.join(COLUMNS)}) VALUES ({marks})",
                [values[c] for c in COLUMNS],
            )
        check.id = int(cursor.lastrowid or 0)
        return check.id

    def load(
        self, *, limit: int = 20, action: str | None = None, since: datetime | None = None
    ) -> list[CheckRecord]:
        """Recorded checks, newest first, optionally of one action or from a moment on."""
        where: list[str] = []
        params: list[Any] = []
        if action is not None:
            where.append("action = ?")
            params.append(parse_action(action).value)
        if since is not None:
            where.append("julianday(checked_at) >= julianday(?)")
            params.append(iso(since))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.rows(
            f"SELECT * FROM checks {clause} ORDER BY id DESC LIMIT ?", [*params, max(1, limit)]
        )
        return [_record(row) for row in rows]

    def latest(self) -> CheckRecord | None:
        found = self.load(limit=1)
        return found[0] if found else None

    def last_outcome(self) -> CheckRecord | None:
        """The newest check that synced or failed (what a failure notification compares with)."""
        rows = self.db.rows(
            "SELECT * FROM checks WHERE action IN ('synced', 'failed') ORDER BY id DESC LIMIT 1"
        )
        return _record(rows[0]) if rows else None

    def count(self) -> int:
        return int(self.db.rows("SELECT count(*) FROM checks")[0][0])


def parse_action(value: str) -> CheckAction:
    try:
        return CheckAction(str(value).strip().lower())
    except ValueError:
        valid = ", ".join(a.value for a in CheckAction)
        raise ConfigurationError(f"Unknown check action {value!r}; one of: {valid}") from None


def _record(row: Any) -> CheckRecord:
    data = dict(row)
    data["action"] = CheckAction(data["action"])
    data["checked_at"] = datetime.fromisoformat(data["checked_at"])
    return CheckRecord(**data)
