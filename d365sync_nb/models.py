"""Sync session models: strategies, statuses, phases, per-phase progress, the session itself,
and what a start request led to. Every timestamp is tz-aware UTC; as JSON it is ISO 8601 with
a ``Z`` suffix (:func:`iso`), the same in every answer and in the cache."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, Field, computed_field

from d365sync_nb.errors import ConfigurationError


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """The one timestamp format of JSON answers and stored rows: ``2026-11-30T13:28:52.1Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SyncStrategy(StrEnum):
    FULL = "full"
    FULL_WITHOUT_LABELS = "full_without_labels"
    ENTITIES_ONLY = "entities_only"
    LABELS_ONLY = "labels_only"
    SHARING_MODE = "sharing_mode"
    INCREMENTAL = "incremental"

    @classmethod
    def parse(cls, value: str | SyncStrategy) -> SyncStrategy:
        """The strategy named ``value``, or a ConfigurationError listing the valid names."""
        try:
            return cls(str(value).strip().lower().replace("-", "_"))
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ConfigurationError(
                f"Unknown strategy {value!r}; choose one of: {valid}"
            ) from None


STRATEGY_DESCRIPTIONS: dict[SyncStrategy, str] = {
    SyncStrategy.FULL: "entities, schemas, enumerations and every label",
    SyncStrategy.FULL_WITHOUT_LABELS: "entities, schemas and enumerations; no label texts",
    SyncStrategy.ENTITIES_ONLY: "data entities only (keeps cached schemas and enumerations)",
    SyncStrategy.LABELS_ONLY: "label texts for metadata already cached",
    SyncStrategy.SHARING_MODE: "copy from another cached environment with identical modules",
    SyncStrategy.INCREMENTAL: "reuse what is cached; fetch only what is missing",
}


class SyncStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (SyncStatus.COMPLETED, SyncStatus.FAILED, SyncStatus.CANCELLED)


class PhaseStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    REUSED = "reused"

    @property
    def is_done(self) -> bool:
        """Ended without error: did its work, had none to do, or reused what was cached."""
        return self in (PhaseStatus.COMPLETED, PhaseStatus.SKIPPED, PhaseStatus.REUSED)


# Phase statuses that mean "no work was expected of it" (left out of the overall percent).
NO_WORK = frozenset({PhaseStatus.SKIPPED, PhaseStatus.REUSED})


class SyncPhase(StrEnum):
    INITIALIZING = "initializing"
    VERSION_CHECK = "version_check"
    ENTITIES = "entities"
    SCHEMAS = "schemas"
    ENUMERATIONS = "enumerations"
    LABELS = "labels"
    INDEXING = "indexing"
    FINALIZING = "finalizing"


PHASES: tuple[SyncPhase, ...] = tuple(SyncPhase)
PHASE_NAMES = frozenset(p.value for p in PHASES)

# Relative work of each phase when this environment has no history yet (seconds at ~10 ms
# latency, realistic scale): labels dominate, one request per label id.
DEFAULT_PHASE_WEIGHTS: dict[SyncPhase, float] = {
    SyncPhase.INITIALIZING: 0.1,
    SyncPhase.VERSION_CHECK: 0.2,
    SyncPhase.ENTITIES: 0.5,
    SyncPhase.SCHEMAS: 4.0,
    SyncPhase.ENUMERATIONS: 0.8,
    SyncPhase.LABELS: 12.0,
    SyncPhase.INDEXING: 1.0,
    SyncPhase.FINALIZING: 0.3,
}


class PhaseProgress(BaseModel):
    """Progress of one phase of a session."""

    phase: SyncPhase
    status: PhaseStatus = PhaseStatus.PENDING
    items_processed: int = 0
    items_total: int | None = None
    current_item: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    note: str | None = Field(
        default=None, description="what the phase did or reused, e.g. 'reused from build 3'"
    )
    weight: float = Field(default=1.0, description="expected share of the session's work")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def percent(self) -> float:
        if self.status.is_done:
            return 100.0
        if self.items_total:
            return round(min(100.0, 100.0 * self.items_processed / self.items_total), 2)
        return 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.completed_at or utcnow()
        return round((end - self.started_at).total_seconds(), 3)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def items_per_second(self) -> float | None:
        seconds = self.seconds
        if not seconds or not self.items_processed:
            return None
        return round(self.items_processed / seconds, 1)


# ``retry_wait_seconds`` was stored as ``throttle_wait_seconds`` before (it counts back-off too).
_RETRY_WAIT = Field(
    default=0.0, validation_alias=AliasChoices("retry_wait_seconds", "throttle_wait_seconds")
)


class PhaseHttp(BaseModel):
    """The attempts of one phase (an entry of ``HttpRecord.by_phase``)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    transport_errors: int = 0
    retry_wait_seconds: float = _RETRY_WAIT
    seconds: float | None = None  # the phase's duration, when it ran


class HttpRecord(BaseModel):
    """What a session asked of the service (see :mod:`d365sync_nb.d365.stats`): every attempt
    counted once, version detection included; ``by_status`` counts complete answers by code;
    ``transport_errors`` counts attempts without a usable answer (dropped, timed out, garbled);
    ``retry_wait_seconds`` sums the waits before retries (Retry-After or back-off) over all
    requests; ``by_phase`` splits the counts by phase name; ``by_language`` counts the label
    attempts per language; ``concurrency`` is the limiter's path."""

    requests: int = 0
    retries: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    transport_errors: int = 0
    retry_wait_seconds: float = _RETRY_WAIT
    bytes_received: int = 0
    latency_ms: dict[str, float] | None = None
    by_phase: dict[str, PhaseHttp] = Field(default_factory=dict)
    by_language: dict[str, int] = Field(default_factory=dict)  # label attempts per language
    concurrency: dict[str, Any] | None = None

    @property
    def throttled(self) -> int:
        """Answers 429 Too Many Requests."""
        return self.by_status.get("429", 0)

    def phase(self, name: str) -> PhaseHttp:
        """The attempts of phase ``name`` (all zero when it sent none)."""
        return self.by_phase.get(name) or PhaseHttp()


class SyncSession(BaseModel):
    """One sync run: identity, strategy, status, the 8 phases, counts and outcome."""

    session_id: str
    environment: str
    strategy: SyncStrategy
    status: SyncStatus = SyncStatus.RUNNING
    global_version_id: int | None = None
    initiated_by: str = "user"
    started_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None
    current_phase: SyncPhase | None = None
    phases: dict[SyncPhase, PhaseProgress] = Field(
        default_factory=lambda: {p: PhaseProgress(phase=p) for p in PHASES}
    )
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    message: str | None = None
    http: HttpRecord = Field(default_factory=HttpRecord)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def requests(self) -> int:
        """Attempts sent (``http.requests``; kept for JSON answers and older readers)."""
        return self.http.requests

    @computed_field  # type: ignore[prop-decorator]
    @property
    def progress_percent(self) -> float:
        """Overall percent, each phase weighted by the work it is expected to take."""
        if self.status == SyncStatus.COMPLETED:
            return 100.0
        active = [p for p in self.phases.values() if p.status not in NO_WORK]
        total = sum(p.weight for p in active)
        if total <= 0:
            return 0.0
        done = sum(p.weight * p.percent / 100.0 for p in active)
        return round(min(99.9, 100.0 * done / total), 2)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_seconds(self) -> float:
        end = self.completed_at or utcnow()
        return round((end - self.started_at).total_seconds(), 3)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def estimated_remaining_seconds(self) -> float | None:
        """Time left, from the elapsed time and the weighted share of work done."""
        if self.status.is_final:
            return 0.0 if self.status == SyncStatus.COMPLETED else None
        fraction = self.progress_percent / 100.0
        if fraction < 0.01:
            return None
        elapsed = self.duration_seconds
        return round(elapsed * (1.0 - fraction) / fraction, 1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def items_per_second(self) -> float | None:
        """Throughput of the running phase (of the whole session once it has ended)."""
        if self.current_phase and not self.status.is_final:
            return self.phases[self.current_phase].items_per_second
        items = sum(p.items_processed for p in self.phases.values())
        return round(items / self.duration_seconds, 1) if self.duration_seconds else None

    def set_http(self, record: dict[str, Any]) -> None:
        """Take a client's ``http`` record (see ``HttpStats.record``), adding each phase's
        seconds; percentiles missing from ``record`` keep their last value."""
        latency = record.get("latency_ms") or self.http.latency_ms
        for phase, counts in record["by_phase"].items():
            progress = self.phases.get(SyncPhase(phase)) if phase in PHASE_NAMES else None
            counts["seconds"] = progress.seconds if progress is not None else None
        self.http = HttpRecord.model_validate({**record, "latency_ms": latency})

    @property
    def is_running(self) -> bool:
        return self.status == SyncStatus.RUNNING

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ISO timestamps (``Z``), enum values, computed figures included."""
        data = self.model_dump(mode="json")
        data["phases"] = {str(k): v for k, v in data["phases"].items()}
        return data

    def summary(self) -> dict[str, Any]:
        """A few lines' worth: status, percent, current phase, ETA."""
        return {
            "session_id": self.session_id,
            "status": self.status.value,
            "strategy": self.strategy.value,
            "global_version_id": self.global_version_id,
            "progress_percent": self.progress_percent,
            "current_phase": self.current_phase.value if self.current_phase else None,
            "estimated_remaining_seconds": self.estimated_remaining_seconds,
            "is_running": self.is_running,
            "started_at": iso(self.started_at),
            "duration_seconds": self.duration_seconds,
            "initiated_by": self.initiated_by,
        }


@dataclass
class StartResult:
    """What a start request led to: a new session, or 'already up to date'."""

    session_id: str | None
    global_version_id: int
    strategy: SyncStrategy
    up_to_date: bool
    message: str
    synced_at: str | None = None

    @property
    def up_to_date_sentence(self) -> str:
        """``Version 3 is already up to date for 'full' (synced 2026-...Z)``: the one wording
        every surface starts from (each adds what its user can do next)."""
        synced = f" (synced {self.synced_at})" if self.synced_at else ""
        return (
            f"Version {self.global_version_id} is already up to date for "
            f"'{self.strategy.value}'{synced}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "global_version_id": self.global_version_id,
            "strategy": self.strategy.value,
            "up_to_date": self.up_to_date,
            "message": self.message,
            "synced_at": self.synced_at,
        }
