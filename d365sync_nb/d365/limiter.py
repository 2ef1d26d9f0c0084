"""A concurrency limiter that halves its limit while 429s arrive and regrows on success."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType


class AdaptiveLimiter:
    """At most ``limit`` holders at once; ``limit`` adapts between 1 and ``max_limit`` (AIMD)."""

    def __init__(self, max_limit: int, on_change: Callable[[int], None] | None = None) -> None:
        if max_limit < 1:
            raise ValueError("max_limit must be at least 1")
        self.max_limit = max_limit
        self.limit = max_limit
        self._on_change = on_change
        self.in_flight = 0
        self._successes = 0
        self._cond = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimiter:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def throttled(self) -> None:
        """A 429 arrived: halve the limit (never below 1)."""
        self._set(max(1, self.limit // 2))
        self._successes = 0

    def succeeded(self) -> None:
        """A request succeeded: after ``limit`` successes in a row, allow one more."""
        if self.limit >= self.max_limit:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._set(self.limit + 1)
            self._successes = 0

    def _set(self, limit: int) -> None:
        if limit != self.limit:
            self.limit = limit
            if self._on_change is not None:
                self._on_change(limit)
