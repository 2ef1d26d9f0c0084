"""Turns engine events into session state and throttled callback notifications.

This is the one throttle of the package: within a phase, callbacks get a snapshot at most every
``CallbackHub.interval`` seconds (default 0.1 s: a progress bar needs ~10 updates a second);
phase transitions and the end always notify. Displays paint every snapshot they receive.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from d365sync_nb.d365.client import D365MetadataClient
from d365sync_nb.models import PhaseStatus, SyncPhase, SyncSession, utcnow

log = logging.getLogger(__name__)

ProgressCallback = Callable[[SyncSession], Awaitable[None] | None]


class CallbackHub:
    """Per-session and manager-wide callbacks; a failing callback is logged, never raised.

    ``interval``: the least time between two snapshots of a session within one phase.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._by_session: dict[str, list[ProgressCallback]] = {}
        self._listeners: list[ProgressCallback] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def add(self, session_id: str, callback: ProgressCallback) -> None:
        self._by_session.setdefault(session_id, []).append(callback)

    def remove(self, session_id: str, callback: ProgressCallback) -> None:
        callbacks = self._by_session.get(session_id, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def add_listener(self, callback: ProgressCallback) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: ProgressCallback) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def forget(self, session_id: str) -> None:
        self._by_session.pop(session_id, None)

    def emit(self, session: SyncSession) -> None:
        callbacks = [*self._by_session.get(session.session_id, []), *self._listeners]
        if not callbacks:
            return
        snapshot = session.model_copy(deep=True)
        for callback in callbacks:
            try:
                result = callback(snapshot)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
            except Exception:
                log.exception("progress callback %r failed (ignored)", callback)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async progress callback failed (ignored)", exc_info=task.exception())


class ProgressReporter:
    """Mutates one session as phases advance; notifies at most every ``interval`` seconds
    within a phase and always on phase transitions."""

    def __init__(
        self,
        session: SyncSession,
        hub: CallbackHub,
        on_transition: Callable[[SyncSession], None] | None = None,
        client: D365MetadataClient | None = None,
    ) -> None:
        self.session = session
        self.hub = hub
        self.on_transition = on_transition
        self.client = client  # its requests are labelled with the phase and feed session.http
        self._last = 0.0

    def notify(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.hub.interval:
            self._last = now
            self.refresh_http(percentiles=force)
            self.hub.emit(self.session)

    def refresh_http(self, *, percentiles: bool = True) -> None:
        """Copy the client's counts into ``session.http`` (latency percentiles when asked)."""
        if self.client is not None:
            self.session.set_http(self.client.http_record(percentiles=percentiles))

    def begin(self, phase: SyncPhase, total: int | None = None, item: str | None = None) -> None:
        p = self.session.phases[phase]
        p.status = PhaseStatus.RUNNING
        p.started_at = utcnow()
        p.items_total = total
        p.items_processed = 0
        p.current_item = item
        self.session.current_phase = phase
        if self.client is not None:
            self.client.stats.phase = phase.value
        self._transition()

    def total(self, phase: SyncPhase, total: int | None) -> None:
        self.session.phases[phase].items_total = total
        self.notify()

    def advance(self, phase: SyncPhase, count: int = 1, item: str | None = None) -> None:
        p = self.session.phases[phase]
        p.items_processed += count
        if item is not None:
            p.current_item = item
        self.notify()

    def end(self, phase: SyncPhase, note: str | None = None) -> None:
        """The phase did its work."""
        p = self.session.phases[phase]
        p.status = PhaseStatus.COMPLETED
        if p.started_at is None:
            p.started_at = utcnow()
        p.completed_at = utcnow()
        if p.items_total is None and p.items_processed:
            p.items_total = p.items_processed
        p.current_item = None
        if note is not None:
            p.note = note
        self._transition()

    def skip(self, phase: SyncPhase, note: str | None = None) -> None:
        """The phase had nothing to do in this session."""
        p = self.session.phases[phase]
        p.status = PhaseStatus.SKIPPED
        p.note = note
        self._transition()

    def reuse(self, phase: SyncPhase, note: str) -> None:
        """The phase took its data from a cache instead of the service (``note`` says which)."""
        p = self.session.phases[phase]
        now = utcnow()
        p.status = PhaseStatus.REUSED
        p.started_at = p.started_at or now
        p.completed_at = now
        p.items_processed, p.items_total, p.current_item = 0, None, None
        p.note = note
        self._transition()

    def fail(self, phase: SyncPhase | None, error: str, status: PhaseStatus) -> None:
        """The session stopped in ``phase`` (if that phase was still running)."""
        if phase is not None and self.session.phases[phase].status == PhaseStatus.RUNNING:
            p = self.session.phases[phase]
            p.status = status
            p.error = error if status == PhaseStatus.FAILED else None
            p.completed_at = utcnow()
        self._transition()

    def _transition(self) -> None:
        self.refresh_http()
        if self.on_transition is not None:
            self.on_transition(self.session)
        self.notify(force=True)
