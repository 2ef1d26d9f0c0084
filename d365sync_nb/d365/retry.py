"""When to try a request again, and the record of each attempt.

:class:`RetryPolicy` holds the limits (attempts, waits, the request's deadline); a
:class:`Retries` is one request's count against them and answers "again, or give up?" for each
outcome. :class:`Sent` is one attempt on its way, written to the client's
:class:`~d365sync_nb.d365.stats.HttpStats` once its outcome is known.

- 429: wait as told (``Retry-After``), up to ``max_throttle_attempts`` times; not a failure.
- 401: refresh the token once.
- 502/503/504, dropped connections, garbled bodies: up to ``max_attempts`` with backoff.
- 500: up to ``max_server_errors`` attempts (a bug on the service's side rarely heals).
- A stalled read (no byte for ``read_timeout``): up to ``max_stalls`` times.
- Nothing past the request's total deadline (the time its attempts spend in flight: a body
  dripping a byte a second, or never ending, cannot hold a sync), and never a body that was too
  large.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import httpx

from d365sync_nb.d365.stats import HttpStats

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The request's total deadline (every attempt and wait) is the profile's ``request_deadline``
# times this share: single-item answers arrive in well under a second, a collection streams MBs.
DEADLINE_SHARE = {
    "Labels": 0.2,
    "GetInstalledModules": 0.2,
    "GetApplicationVersion": 0.2,
    "GetPlatformBuildVersion": 0.2,
}


@dataclass(frozen=True)
class RetryPolicy:
    """The limits of one request's attempts."""

    max_attempts: int = 6
    max_throttle_attempts: int = 30
    max_stalls: int = 3
    max_server_errors: int = 3  # attempts of a request answered 500
    backoff_base: float = 0.2
    backoff_cap: float = 10.0
    deadline: float = 600.0  # seconds for a whole collection answer, every attempt included

    def deadline_for(self, endpoint: str) -> float:
        """The total deadline of one request to ``endpoint`` (an endpoint class)."""
        return self.deadline * DEADLINE_SHARE.get(endpoint, 1.0)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (jittered exponential backoff)."""
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        delay = max(delay, retry_after or 0)
        return delay * (0.5 + random.random() / 2)

    def throttle_wait(self, throttles: int, retry_after: float | None) -> float:
        """Seconds to wait after the ``throttles``-th 429: as told, else backoff."""
        if retry_after is not None:
            return retry_after
        return min(self.backoff_cap, self.backoff_base * 2 ** min(throttles, 6))


class Retries:
    """One request's attempts counted against a :class:`RetryPolicy`."""

    def __init__(self, policy: RetryPolicy, deadline: float) -> None:
        self.policy = policy
        self.deadline = deadline  # seconds in flight for the whole request
        self.in_flight = 0.0  # seconds the attempts so far spent sent and answering
        self.attempt = 0  # attempts that count against max_attempts
        self.tries = 0  # every attempt (the request log's attempt number)
        self.throttles = 0
        self.stalls = 0
        self.server_errors = 0
        self.refreshed = False

    def next_try(self) -> None:
        self.attempt += 1
        self.tries += 1

    def remaining(self) -> float:
        """Seconds in flight left before the request's deadline. Waits before a retry do not
        count (they are bounded by the retry limits); the time answers take does."""
        return self.deadline - self.in_flight

    def transport_error(self, kind: str) -> bool:
        """A failed attempt (``kind``: timeout, connect, dropped, garbled): try again?"""
        self.stalls += kind == "timeout"
        if kind in ("deadline", "too_large"):
            return False
        return self.attempt < self.policy.max_attempts and self.stalls < self.policy.max_stalls

    def throttled(self) -> bool:
        """A 429: wait and try again (not counted as a failed attempt)?"""
        self.throttles += 1
        self.attempt -= 1
        return self.throttles < self.policy.max_throttle_attempts

    def refresh_token(self) -> bool:
        """A 401: refresh the token and try again, once."""
        if self.refreshed:
            return False
        self.refreshed = True
        self.attempt -= 1
        return True

    def status_retried(self, status: int) -> bool:
        """An error status other than 429/401: try again?"""
        if status not in RETRY_STATUSES or self.attempt >= self.policy.max_attempts:
            return False
        if status == 500:
            self.server_errors += 1
            return self.server_errors < self.policy.max_server_errors
        return True

    def garbled_retried(self) -> bool:
        return self.attempt < self.policy.max_attempts


class Sent:
    """One attempt on its way: timed from the moment it holds a concurrency slot."""

    __slots__ = ("activity_id", "attempt", "endpoint", "request_id", "size", "started",
                 "started_at", "stats", "status")  # fmt: skip

    def __init__(self, stats: HttpStats, endpoint: str, attempt: int, request_id: str) -> None:
        self.stats, self.endpoint, self.attempt, self.request_id = (
            stats, endpoint, attempt, request_id
        )  # fmt: skip
        self.started = self.started_at = 0.0
        self.status: int | None = None
        self.size = 0
        self.activity_id: str | None = None

    def start(self) -> None:
        self.started_at, self.started = time.time(), time.perf_counter()

    def answered(self, status: int, size: int, activity_id: str | None) -> None:
        self.status, self.size, self.activity_id = status, size, activity_id

    def failed(self, error: str, *, retried: bool) -> None:
        self.log(error=error, retry_cause="transport" if retried else None)

    def log(self, *, error: str | None = None, retry_cause: str | None = None) -> None:
        if not self.started:  # never got a slot (cancelled while waiting): not sent
            return
        self.stats.attempt(
            started_at=self.started_at,
            endpoint=self.endpoint,
            status=self.status,
            error=error,
            attempt=self.attempt,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            size=self.size,
            retry_cause=retry_cause,
            request_id=self.request_id,
            activity_id=self.activity_id,
        )


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds; HTTP dates are rare here)."""
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return max(0.0, min(value, 120.0)) if value == value else None  # NaN: ignored
