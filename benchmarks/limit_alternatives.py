"""Limit algorithms measured against the client's default (``compare_limiters.py``).

Each is an :class:`AdaptiveLimit` whose ``update`` is replaced; the client takes one through
``limit_factory``. Only benchmarks use them.
"""

from __future__ import annotations

from collections.abc import Callable

from d365sync_nb.d365.limiter import AdaptiveLimit, Change, Outcome, Ticket


class Halving(AdaptiveLimit):
    """The limiter before issue 13: starts at its maximum, halves on every 429, +1 after
    ``limit`` answers in a row; no latency signal."""

    def __init__(self, ceiling: int) -> None:
        super().__init__(ceiling, ceiling, latency=False, slow_start=False)
        self._successes = 0

    def update(
        self, ticket: Ticket, outcome: Outcome, latency: float | None, now: float
    ) -> Change | None:
        if outcome is Outcome.THROTTLED:
            self._successes = 0
            return self._to(max(1, self.limit // 2), "429: halved")
        if outcome is not Outcome.OK or self.limit >= self.ceiling:
            return None
        self._successes += 1
        if self._successes < self.limit:
            return None
        self._successes = 0
        return self._to(self.limit + 1, "a round of answers")


class Gradient(AdaptiveLimit):
    """Netflix concurrency-limits' Gradient2: ``limit * gradient + queue`` smoothed, where the
    gradient is ``tolerance * long-term average latency / this window's average`` (0.5 to 1),
    so it grows by about ``queue * smoothing`` per window while latency does not rise. A 429 or
    503 lowers it to 0.9x once per round, with no memory of the level."""

    def __init__(
        self,
        initial: int = 8,
        ceiling: int = 64,
        *,
        tolerance: float = 1.5,
        smoothing: float = 0.2,
        long_window: int = 600,
    ) -> None:
        super().__init__(initial, ceiling, slow_start=False)
        self.estimate = float(initial)
        self.grad_tolerance = tolerance
        self.smoothing = smoothing
        self.long_window = long_window
        self.long_rtt: float | None = None
        self._samples = 0
        self._sum = 0.0
        self._max_in_flight = 0

    def update(
        self, ticket: Ticket, outcome: Outcome, latency: float | None, now: float
    ) -> Change | None:
        if outcome in (Outcome.THROTTLED, Outcome.UNAVAILABLE):
            if ticket.epoch != self.epoch:
                return None
            self.estimate = max(1.0, self.estimate * 0.9)
            return self._decrease(int(self.estimate), f"{outcome.value}: 0.9x")
        if outcome is not Outcome.OK or latency is None:
            return None
        self._samples += 1
        self._sum += latency
        self._max_in_flight = max(self._max_in_flight, ticket.in_flight)
        if self._samples < max(10, self.limit):
            return None
        short = self._sum / self._samples
        in_flight, self._samples, self._sum, self._max_in_flight = self._max_in_flight, 0, 0.0, 0
        if self.long_rtt is None:
            self.long_rtt = short
        else:
            weight = self.limit / self.long_window  # an average over ~long_window samples
            self.long_rtt += (short - self.long_rtt) * min(1.0, weight)
        if self.long_rtt / short > 2:  # recover from a long stretch of high latency
            self.long_rtt *= 0.95
        if in_flight * 2 < self.estimate:
            return None  # the limit is not used
        gradient = max(0.5, min(1.0, self.grad_tolerance * self.long_rtt / short))
        queue = 4.0
        new = self.estimate * gradient + queue
        new = self.estimate * (1 - self.smoothing) + new * self.smoothing
        self.estimate = max(1.0, min(float(self.ceiling), new))
        return self._to(int(self.estimate), f"gradient {gradient:.2f}")


ALTERNATIVES: dict[str, Callable[[int | None], AdaptiveLimit]] = {
    "fixed-32": lambda c: AdaptiveLimit.fixed(32),  # --concurrency 32, for reference
    "halving-16": lambda c: Halving(16),  # the default before issue 13
    "aimd": lambda c: AdaptiveLimit(latency=False),
    "gradient2": lambda c: Gradient(),
    "aimd+latency": lambda c: AdaptiveLimit(),  # the default
}
