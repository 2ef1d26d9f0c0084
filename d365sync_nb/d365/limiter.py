"""A concurrency limiter that halves its limit while 429s arrive and regrows on success."""

from __future__ import annotations

import asyncio
from types import TracebackType


class AdaptiveLimiter:
    """At most ``limit`` holders at once; ``limit`` adapts between 1 and ``max_limit`` (AIMD)."""

    def __init__(self, max_limit: int) -> None:
        if max_limit < 1:
            raise ValueError("max_limit must be at least 1")
        self.max_limit = max_limit
        self.limit = max_limit
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
        self.limit = max(1, self.limit // 2)
        self._successes = 0

    def succeeded(self) -> None:
        """A request succeeded: after ``limit`` successes in a row, allow one more."""
        if self.limit >= self.max_limit:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self.limit += 1
            self._successes = 0
