"""How many requests may be in flight: a gate, and the limit it adapts to the service.

:class:`Limiter` is the gate: :meth:`~Limiter.acquire` waits for a slot and returns a
:class:`Ticket`; :meth:`~Limiter.release` gives the slot back with the attempt's
:class:`Outcome`. :class:`AdaptiveLimit` is the algorithm: pure, fed samples and a time, so
tests drive it without a clock or a loop.

The default (``concurrency`` not set) is adaptive, measured against alternatives (see
docs/ARCHITECTURE.md):

- start at ``initial`` (8); while the requests in flight use at least half the limit, grow by
  one per answer (slow start, doubling per round trip) until the first back-off, then by one per
  ``limit`` answers (about one per round trip), never above ``ceiling`` (64);
- a 429 or a 503 lowers the limit to 0.9x, and a 429 also below the number in flight when its
  request was sent; once per round: answers to requests sent before the last decrease count
  no more. A 429 marks its level: the limit stays under it and probes it again only after a
  quiet period (``probe_rounds`` rounds) that doubles each time the probe is throttled too;
- the median latency of each window of ``limit`` answers (single items, e.g. labels; the
  service's own ``Server-Timing`` when it sends one, else the round trip) is compared with the
  lowest window median of the last minute: above ``tolerance`` (2x) times it, the limit goes to
  0.9x (not below half of ``initial``).

``AdaptiveLimit.fixed(n)`` is ``--concurrency N``: it starts and stays at N, and goes lower only
while the service throttles (429/503), climbing back afterwards.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_INITIAL = 8  # where an adaptive limit starts
DEFAULT_CEILING = 64  # an adaptive limit never goes above this
LOG_INTERVAL = 1.0  # seconds between two debug lines about limit changes


class Outcome(enum.Enum):
    """What an attempt says about the service's load."""

    OK = "ok"  # an answer (2xx, or a 404 for a single item): room to grow
    THROTTLED = "429"  # too many requests: back off, and remember the level
    UNAVAILABLE = "503"  # overloaded: back off
    OTHER = "other"  # any other answer or error: no signal


@dataclass(frozen=True, slots=True)
class Ticket:
    """A slot held by one attempt."""

    in_flight: int  # requests in flight once this one was let through (itself included)
    epoch: int  # the limit's epoch then (each decrease starts a new one)
    started: float  # the limiter's clock when it was let through


@dataclass(frozen=True, slots=True)
class Change:
    """A new limit and why."""

    limit: int
    reason: str


class _WindowMin:
    """The lowest value pushed during the last ``horizon`` seconds (a monotonic deque)."""

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._values: deque[tuple[float, float]] = deque()

    def push(self, now: float, value: float) -> float:
        values = self._values
        while values and values[-1][1] >= value:
            values.pop()
        values.append((now, value))
        while values[0][0] < now - self.horizon:
            values.popleft()
        return values[0][1]


class AdaptiveLimit:
    """The limit and how answers move it (see the module docstring)."""

    def __init__(
        self,
        initial: int = DEFAULT_INITIAL,
        ceiling: int = DEFAULT_CEILING,
        *,
        latency: bool = True,
        slow_start: bool = True,
        backoff: float = 0.9,
        tolerance: float = 2.0,
        probe_rounds: int = 50,
        baseline_seconds: float = 60.0,
        min_window: int = 10,
    ) -> None:
        if not 1 <= initial <= ceiling:
            raise ValueError("the limits must satisfy 1 <= initial <= ceiling")
        self.initial = initial
        self.ceiling = ceiling
        self.limit = initial
        self.latency = latency
        self.backoff = backoff
        self.tolerance = tolerance
        self.min_window = min_window
        self.epoch = 0
        self.slow_start = slow_start
        self.throttled_at: int | None = None  # the level a 429 came at: stay below it
        self.probe_rounds = probe_rounds
        self._probe_wait = probe_rounds  # rounds without a back-off before probing that level
        self._probe_from: int | None = None  # calm count when the current probe began
        self._calm = 0  # answers since the last decrease
        self._credit = 0  # answers towards the next additive step
        self._window: list[float] = []
        self._baseline = _WindowMin(baseline_seconds)
        self.baseline: float | None = None  # seconds: the lowest recent window median
        self.last_latency: float | None = None  # seconds: the last window median

    @classmethod
    def fixed(cls, limit: int) -> AdaptiveLimit:
        """Exactly ``limit`` in flight, lower only while the service throttles."""
        return cls(limit, limit, latency=False, slow_start=False)

    @property
    def adaptive(self) -> bool:
        return self.latency or self.initial != self.ceiling

    def update(
        self, ticket: Ticket, outcome: Outcome, latency: float | None, now: float
    ) -> Change | None:
        """Account for one attempt; ``latency`` (seconds) only for comparable requests."""
        if outcome is Outcome.OK:
            return self._answered(ticket, latency, now)
        if outcome is Outcome.THROTTLED or outcome is Outcome.UNAVAILABLE:
            return self._overloaded(ticket, outcome)
        return None

    def _answered(self, ticket: Ticket, latency: float | None, now: float) -> Change | None:
        self._calm += 1
        if self._probe_from is not None and self._calm - self._probe_from >= self.limit:
            self._probe_from = None  # the probed level held for a round: the service allows it
            self._probe_wait = self.probe_rounds
        if latency is not None and self.latency:  # a round is a window of latencies
            self._window.append(latency)
            round_done = len(self._window) >= max(self.min_window, self.limit)
            if round_done:
                slow, change = self._judge(now)
                if slow:
                    return change  # lowered, or already at the floor: no growth either way
        else:  # a round is ``limit`` answers
            self._credit += 1
            round_done = self._credit >= self.limit
            if round_done:
                self._credit = 0
        if self.limit >= self.ceiling or ticket.in_flight * 2 < self.limit:
            return None  # at the ceiling, or the limit is not used: no evidence for more
        if self.throttled_at is not None and self.limit + 1 >= self.throttled_at:
            if self._calm < self._probe_wait * self.limit:
                return None
            self.throttled_at = None
            self._probe_from = self._calm
            return self._to(self.limit + 1, f"probing: no 429 for {self._calm} answers")
        if self.slow_start:
            return self._to(self.limit + 1, "slow start")
        if round_done:
            return self._to(self.limit + 1, "a round without 429, 503 or rising latency")
        return None

    def _overloaded(self, ticket: Ticket, outcome: Outcome) -> Change | None:
        self.slow_start = False
        if ticket.epoch != self.epoch:
            return None  # sent before the last decrease, which already answered it
        target = int(self.limit * self.backoff)
        if outcome is Outcome.THROTTLED:
            target = min(target, ticket.in_flight - 1)
            self.throttled_at = ticket.in_flight
            if self._probe_from is not None:  # the probe was throttled: wait longer next time
                self._probe_wait = min(self._probe_wait * 2, self.probe_rounds * 64)
                self._probe_from = None
            reason = f"429 at {ticket.in_flight} in flight"
        else:
            reason = "503 Service Unavailable"
        return self._decrease(max(1, min(target, self.limit - 1)), reason)

    def _judge(self, now: float) -> tuple[bool, Change | None]:
        """Close a window of latencies: (whether it was slow, the decrease it caused)."""
        window = sorted(self._window)
        self._window.clear()
        median = self.last_latency = window[len(window) // 2]
        baseline = self.baseline = self._baseline.push(now, median)
        if median <= self.tolerance * baseline:
            return False, None
        self.slow_start = False
        target = max(max(1, self.initial // 2), min(int(self.limit * self.backoff), self.limit - 1))
        if target >= self.limit:
            return True, None
        return True, self._decrease(
            target,
            f"latency {median * 1000:.0f} ms > {self.tolerance:g} x {baseline * 1000:.0f} ms",
        )

    def _decrease(self, limit: int, reason: str) -> Change | None:
        self.epoch += 1
        self._calm = self._credit = 0
        return self._to(limit, reason)

    def _to(self, limit: int, reason: str) -> Change | None:
        if limit == self.limit:
            return None
        self.limit = limit
        return Change(limit, reason)


class Limiter:
    """At most ``algorithm.limit`` holders at once, let through in arrival order."""

    def __init__(
        self,
        algorithm: AdaptiveLimit,
        *,
        on_change: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.algorithm = algorithm
        self.in_flight = 0
        self.changes = 0
        self.lowest = self.highest = algorithm.limit
        self._on_change = on_change
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._logged_at: float | None = None
        self._quiet: list[int] = []  # limits not logged since the last line

    @property
    def limit(self) -> int:
        return self.algorithm.limit

    @property
    def ceiling(self) -> int:
        return self.algorithm.ceiling

    async def acquire(self) -> Ticket:
        """Wait for a slot (first come, first served)."""
        if self.in_flight >= self.limit or self._waiters:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter  # _wake counts the slot for us before it sets the result
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # given a slot, then cancelled
                    self.in_flight -= 1
                    self._wake()
                raise
        else:
            self.in_flight += 1
        return Ticket(self.in_flight, self.algorithm.epoch, self._clock())

    def release(
        self,
        ticket: Ticket,
        outcome: Outcome,
        *,
        sample: bool = False,
        latency: float | None = None,
    ) -> None:
        """Give the slot back. ``sample``: its latency compares with other samples (a single
        item); ``latency`` (seconds) replaces the round trip, e.g. the service's own timing."""
        self.in_flight -= 1
        now = self._clock()
        if not sample:
            latency = None
        elif latency is None:
            latency = now - ticket.started
        change = self.algorithm.update(ticket, outcome, latency, now)
        if change is not None:
            self.changes += 1
            self.lowest, self.highest = (
                min(self.lowest, change.limit),
                max(self.highest, change.limit),
            )
            if self._on_change is not None:
                self._on_change(change.limit)
            self._log(change, now)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _log(self, change: Change, now: float) -> None:
        """One debug line per change, at most one per LOG_INTERVAL (the rest summed up)."""
        if not log.isEnabledFor(logging.DEBUG):
            return
        if self._logged_at is not None and now - self._logged_at < LOG_INTERVAL:
            self._quiet.append(change.limit)
            return
        quiet = self._quiet
        since = (
            f" ({len(quiet)} changes since the last line, between {min(quiet)} and {max(quiet)})"
            if quiet
            else ""
        )
        log.debug(
            "concurrency %d: %s; %d in flight%s", change.limit, change.reason, self.in_flight, since
        )
        self._logged_at, self._quiet = now, []

    def summary(self) -> str:
        """One line: the mode and where the limit is."""
        a = self.algorithm
        mode = f"adaptive {a.initial}..{a.ceiling}" if a.adaptive else f"fixed {a.ceiling}"
        return (
            f"concurrency {mode}: {a.limit} now after {self.changes} changes "
            f"(lowest {self.lowest}, highest {self.highest})"
        )
