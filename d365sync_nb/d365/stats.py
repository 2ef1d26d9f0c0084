"""What a client asked of the service: every attempt counted once, and one row per attempt.

:class:`HttpStats` is filled by :class:`~d365sync_nb.d365.client.D365MetadataClient` as it
sends: an attempt with a complete answer counts under its status code; an attempt that got no
complete answer (a dropped connection, a timeout) and an answer whose body is garbled count as
transport errors. ``phase`` (set by the session as its phases begin) labels each attempt. The
rows wait in :attr:`HttpStats.rows` until the session writes them to its request log
(:meth:`drain`); the aggregates stay in memory and become the session's ``http`` record.
"""

from __future__ import annotations

import re
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from d365sync_nb.d365.request_log import TRANSPORT_ERRORS, RequestRow

# Endpoint classes: the metadata collections, Labels, and the three version actions.
_COLLECTION = re.compile(r"(?:^|/)Metadata/([A-Za-z]+)")
_ACTION = re.compile(r"Microsoft\.Dynamics\.DataEntities\.([A-Za-z]+)")
MAX_LIMIT_CHANGES = 1000  # points of the concurrency path kept for the chart
LIMIT_RESOLUTION = 0.05  # seconds: changes closer than this to the last point replace its value


def endpoint_class(url: str) -> str:
    """``Labels``, ``PublicEntities``, ``GetInstalledModules``, ... of a request URL."""
    found = _COLLECTION.search(url) or _ACTION.search(url)
    return found[1] if found else "other"


@dataclass
class PhaseCounts:
    """Attempts of one phase."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    transport_errors: int = 0
    retry_wait_seconds: float = 0.0


@dataclass
class HttpStats:
    """Counts, latencies and rows of every attempt a client sent."""

    phase: str | None = None
    language: str | None = None  # the language of the label requests sent now (set by the sync)
    requests: int = 0
    retries: int = 0
    transport_errors: int = 0
    retry_wait_seconds: float = 0.0
    bytes_received: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_phase: dict[str, PhaseCounts] = field(default_factory=dict)
    by_language: dict[str, int] = field(default_factory=dict)  # label attempts per language
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    rows: list[RequestRow] = field(default_factory=list)
    limit_changes: list[tuple[float, int]] = field(default_factory=list)
    limit_range: tuple[int, int] | None = None  # lowest and highest limit the path reached
    limit_change_count: int = 0
    limit_resolution: float = LIMIT_RESOLUTION
    started: float = field(default_factory=time.time)

    def _phase_counts(self) -> PhaseCounts:
        key = self.phase or "none"
        counts = self.by_phase.get(key)
        if counts is None:
            counts = self.by_phase[key] = PhaseCounts()
        return counts

    def attempt(
        self,
        *,
        started_at: float,
        endpoint: str,
        status: int | None,
        error: str | None,
        attempt: int,
        latency_ms: float,
        size: int,
        retry_cause: str | None,
        request_id: str,
        activity_id: str | None,
    ) -> None:
        """Record one attempt (call once per attempt sent)."""
        self.requests += 1
        phase = self._phase_counts()
        phase.requests += 1
        if attempt > 1:
            self.retries += 1
            phase.retries += 1
        if status is not None:
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if status == 429:
                phase.throttled += 1
        if error in TRANSPORT_ERRORS:
            self.transport_errors += 1
            phase.transport_errors += 1
        self.bytes_received += size
        self.latencies_ms.append(latency_ms)
        language = self.language if endpoint == "Labels" else None
        if language is not None:
            self.by_language[language] = self.by_language.get(language, 0) + 1
        self.rows.append(
            RequestRow(
                started_at,
                self.phase,
                endpoint,
                status,
                error,
                attempt,
                round(latency_ms, 3),
                size,
                retry_cause,
                request_id,
                activity_id,
                language,
            )
        )

    def waited(self, seconds: float) -> None:
        """Time spent honouring Retry-After or backing off before a retry."""
        self.retry_wait_seconds += seconds
        self._phase_counts().retry_wait_seconds += seconds

    def limit_changed(self, limit: int, now: float | None = None) -> None:
        """The limiter's limit is now ``limit``. The path keeps one point per
        ``limit_resolution`` seconds (the last value in it); when it holds MAX_LIMIT_CHANGES
        points, every other one goes and the resolution doubles. Lowest and highest are exact."""
        now = time.time() if now is None else now
        self.limit_change_count += 1
        low, high = self.limit_range or (limit, limit)
        self.limit_range = (min(low, limit), max(high, limit))
        path = self.limit_changes
        if path and now - path[-1][0] < self.limit_resolution:
            path[-1] = (path[-1][0], limit)
            return
        if len(path) >= MAX_LIMIT_CHANGES:
            del path[1::2]
            self.limit_resolution *= 2
        path.append((now, limit))

    def drain(self) -> list[RequestRow]:
        """The rows recorded since the last drain (for the request log)."""
        rows, self.rows = self.rows, []
        return rows

    def record(
        self,
        *,
        percentiles: bool = True,
        start_limit: int | None = None,
        ceiling: int | None = None,
        adaptive: bool | None = None,
    ) -> dict[str, Any]:
        """The session's ``http`` record (JSON-ready); latency percentiles when asked.

        ``concurrency``: the limiter's path (``start``, ``min``, ``max``, ``final``, ``changes``
        as [seconds since the client began, limit]), its ``mode`` (adaptive or fixed) and
        ``ceiling`` when given."""
        limits = [limit for _, limit in self.limit_changes]
        start = start_limit if start_limit is not None else (limits[0] if limits else None)
        concurrency: dict[str, Any] | None = None
        if start is not None:
            low, high = self.limit_range or (start, start)
            concurrency = {
                "start": start,
                "min": min(start, low),
                "max": max(start, high),
                "final": limits[-1] if limits else start,
                "changes": [[round(t - self.started, 3), limit] for t, limit in self.limit_changes],
                **({} if adaptive is None else {"mode": "adaptive" if adaptive else "fixed"}),
                **({} if ceiling is None else {"ceiling": ceiling}),
                "change_count": self.limit_change_count,
            }
        return {
            "requests": self.requests,
            "retries": self.retries,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "transport_errors": self.transport_errors,
            "retry_wait_seconds": round(self.retry_wait_seconds, 3),
            "bytes_received": self.bytes_received,
            "latency_ms": latency_summary(self.latencies_ms) if percentiles else None,
            "by_phase": {
                phase: {
                    "requests": c.requests,
                    "retries": c.retries,
                    "throttled": c.throttled,
                    "transport_errors": c.transport_errors,
                    "retry_wait_seconds": round(c.retry_wait_seconds, 3),
                }
                for phase, c in self.by_phase.items()
            },
            "by_language": dict(self.by_language),
            "concurrency": concurrency,
        }


def latency_summary(latencies: Any) -> dict[str, float] | None:
    """p50, p95, p99 and max of latencies in ms (nearest rank), or None without any."""
    values = sorted(latencies)
    if not values:
        return None

    def rank(q: float) -> float:
        return round(values[min(len(values) - 1, max(0, int(q * len(values) + 0.5) - 1))], 1)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": round(values[-1], 1)}
