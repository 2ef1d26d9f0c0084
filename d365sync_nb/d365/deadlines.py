"""The attempts' deadlines under one timer: what ``asyncio.timeout`` does per attempt, without a
timer handle and a context manager for each of them (a label request is ~200 us of CPU;
``asyncio.timeout`` took ~2% of a sync's).

:class:`Deadlines` keeps the attempts in flight with the loop time each must end by, and one
timer handle at the earliest of them. When it fires, every attempt past its deadline has its
task cancelled (as ``asyncio.timeout`` does) and the timer moves to the next deadline. An
attempt ending takes itself off; :meth:`Deadlines.end` says whether its deadline cancelled it
(a timeout) or someone else did (a cancel, passed on).
"""

from __future__ import annotations

import asyncio
import math


class Watch:
    """One attempt under watch: its task, the loop time it must end by."""

    __slots__ = ("cancelling", "expired", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task, self.when = task, when
        self.cancelling = task.cancelling()  # cancel requests already pending at the start
        self.expired = False


class Deadlines:
    """Cancels each watched attempt's task at its deadline; one timer for all of them."""

    def __init__(self) -> None:
        self._watched: dict[Watch, None] = {}  # (an ordered set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf  # when the timer fires

    def start(self, seconds: float) -> Watch:
        """Watch the current task: cancel it in ``seconds`` unless :meth:`end` comes first."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # (a client used again under another loop)
            self.close()
            self._loop = loop
        task = asyncio.current_task()
        assert task is not None
        watch = Watch(task, loop.time() + seconds)
        self._watched[watch] = None
        if watch.when < self._at:
            self._schedule(watch.when)
        return watch

    def end(self, watch: Watch, *, cancelled: bool) -> bool:
        """Stop watching; whether the attempt timed out: its deadline cancelled it
        (``cancelled``: it ended in ``CancelledError``) and nobody else asked for a cancel."""
        self._watched.pop(watch, None)
        if not watch.expired:
            return False
        return watch.task.uncancel() <= watch.cancelling and cancelled

    def close(self) -> None:
        """Forget every watch and the timer."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._at = None, math.inf
        self._watched.clear()

    def _schedule(self, when: float) -> None:
        assert self._loop is not None
        if self._handle is not None:
            self._handle.cancel()
        self._at = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        self._handle, self._at = None, math.inf
        now, next_due = self._loop.time(), math.inf
        for watch in self._watched:
            if watch.when <= now:
                if not watch.expired:
                    watch.expired = True
                    watch.task.cancel()
            elif watch.when < next_due:
                next_due = watch.when
        if next_due < math.inf:
            self._schedule(next_due)
