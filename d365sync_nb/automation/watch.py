"""The watch: check each environment's version on a schedule, sync when due, notify, record.

One :class:`Watcher` runs any number of targets (one per environment, each on its own schedule)
on one event loop, with a bound on parallel syncs. Each check holds the cache's
:class:`~d365sync_nb.store.lock.CacheLock`, so two watchers, or a watcher and a manual sync, in
any processes, never sync one environment at once. :meth:`Watcher.stop` ends the watch: a
running sync is cancelled (and recorded cancelled), otherwise it stops between checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from d365sync_nb import diagnostics
from d365sync_nb.automation.marker import clear_marker, write_marker
from d365sync_nb.automation.notify import (
    RETRY_DELAYS,
    Notice,
    NotifyError,
    NotifyTarget,
    deliver,
)
from d365sync_nb.automation.schedule import Schedule
from d365sync_nb.automation.version_check import (
    DEFAULT_STRATEGY,
    RETRY_BASE_SECONDS,
    VersionStatus,
    check_version,
)
from d365sync_nb.errors import D365SyncError, SessionConflictError
from d365sync_nb.models import SyncSession, SyncStatus, SyncStrategy, iso, utcnow
from d365sync_nb.redaction import redact
from d365sync_nb.store.checks import CheckAction, CheckRecord
from d365sync_nb.store.lock import CacheLock

if TYPE_CHECKING:
    from d365sync_nb.sync.manager import SyncSessionManager

log = logging.getLogger(__name__)

INITIATED_BY = "watch"
EXIT_CODES = {
    CheckAction.SYNCED: 0,
    CheckAction.UP_TO_DATE: 0,
    CheckAction.SKIPPED_RUNNING: 0,
    CheckAction.BACKING_OFF: 1,
    CheckAction.FAILED: 1,
    CheckAction.CANCELLED: 130,
}
ACTION_WORDS = {
    CheckAction.SYNCED: "synced",
    CheckAction.UP_TO_DATE: "up to date",
    CheckAction.FAILED: "failed",
    CheckAction.CANCELLED: "cancelled",
    CheckAction.SKIPPED_RUNNING: "skipped (a sync was running)",
    CheckAction.BACKING_OFF: "waiting to retry",
}
EventSink = Callable[[dict[str, Any]], None]


@dataclass(eq=False)
class WatchTarget:
    """One environment a watch keeps current, and its live state."""

    manager: SyncSessionManager
    schedule: Schedule
    strategy: SyncStrategy = DEFAULT_STRATEGY
    notify: list[NotifyTarget] = field(default_factory=list)
    name: str | None = None  # the profile, when there is one
    next_check: datetime | None = None
    last: CheckRecord | None = None
    running_session_id: str | None = None

    @property
    def environment(self) -> str:
        return self.manager.settings.base_url

    @property
    def secrets(self) -> set[str]:
        return {s for t in self.notify for s in t.secrets}

    def status_line(self, *, watching: bool = True) -> str:
        """``watching: next check 14:00 UTC; last check 13:00: up to date (10.0.41)``
        (``not watching; last check ...`` once the watch has stopped)."""
        parts = []
        if self.running_session_id:
            parts.append(f"syncing (session {self.running_session_id[:8]})")
        elif self.next_check is not None:
            parts.append(f"next check {self.next_check:%H:%M} UTC")
        elif watching:
            parts.append("checking now")
        last = self.last
        if last is not None:
            app = f" ({last.application_version})" if last.application_version else ""
            parts.append(f"last check {last.checked_at:%H:%M}: {ACTION_WORDS[last.action]}{app}")
        if not watching:
            return "; ".join(["not watching", *parts])
        return "watching: " + ("; ".join(parts) or "starting")


class Watcher:
    """Checks, syncs and notifies for its targets until :meth:`stop`."""

    def __init__(
        self,
        targets: Sequence[WatchTarget],
        *,
        max_parallel: int = 2,
        retry_base: float = RETRY_BASE_SECONDS,
        notify_delays: Sequence[float] = RETRY_DELAYS,
        on_event: EventSink | None = None,
        on_status: Callable[[WatchTarget], None] | None = None,
        started_by: str = "cli",
    ) -> None:
        """``on_event(dict)``: each event (check, sync_started, sync_finished, notified,
        notify_failed); ``on_status(target)``: whenever a target's next check or running
        session changes (a status line to repaint)."""
        if not targets:
            raise ValueError("a watch needs at least one environment")
        self.targets = list(targets)
        self.retry_base = retry_base
        self.notify_delays = tuple(notify_delays)
        self.on_event = on_event
        self.on_status = on_status
        self.started_by = started_by
        self.max_parallel = max(1, int(max_parallel))
        self._slots: asyncio.Semaphore | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = threading.Event()
        self._cancels: set[asyncio.Future[None]] = set()
        self.running = False

    # -- control -------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    def stop(self) -> None:
        """End the watch: cancel running syncs (recorded cancelled), or stop between checks.
        Safe from any thread (a signal handler, another loop)."""
        self._stop_requested.set()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            self._stop_now()
        else:
            loop.call_soon_threadsafe(self._stop_now)

    def _stop_now(self) -> None:
        if self._stop is not None:
            self._stop.set()
        for target in self.targets:
            if target.running_session_id:
                self._cancel_soon(target, target.running_session_id)

    def _cancel_soon(self, target: WatchTarget, session_id: str) -> None:
        future = asyncio.ensure_future(self._cancel(target, session_id))
        self._cancels.add(future)
        future.add_done_callback(self._cancels.discard)

    async def _cancel(self, target: WatchTarget, session_id: str) -> None:
        try:
            await target.manager.cancel_sync_session(session_id)
        except D365SyncError:
            log.exception("watch: could not cancel session %s", session_id)

    # -- running -------------------------------------------------------------------------
    async def run(self, *, once: bool = False) -> list[CheckRecord]:
        """Run until :meth:`stop` (``once``: one check of every target, then return)."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_parallel)
        if self._stop_requested.is_set():
            self._stop.set()
        self.running = True
        try:
            if once:
                return list(await asyncio.gather(*(self.check(t) for t in self.targets)))
            for target in self.targets:
                write_marker(
                    target.manager.store.path,
                    schedule=str(target.schedule),
                    strategy=target.strategy.value,
                    started_by=self.started_by,
                )
            await asyncio.gather(*(self._watch(t) for t in self.targets))
            return [t.last for t in self.targets if t.last is not None]
        finally:
            self.running = False
            for target in self.targets:
                target.next_check = None
                if not once:
                    clear_marker(target.manager.store.path)
                self._status(target)

    async def _watch(self, target: WatchTarget) -> None:
        assert self._stop is not None
        due = target.schedule.first(utcnow())
        while not self._stop.is_set():
            target.next_check = due
            self._status(target)
            wait = (due - utcnow()).total_seconds()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
                if self._stop.is_set():
                    break
            target.next_check = None
            self._status(target)
            await self.check(target)
            now = utcnow()
            due = target.schedule.next_after(due)
            if due <= now:  # the check outlasted the interval: the next one from now
                due = target.schedule.next_after(now) if target.schedule.cron else now

    async def check(self, target: WatchTarget) -> CheckRecord:
        """One check of one environment: version, sync when due, notifications, the record."""
        if self._slots is None:  # called without run(): one-off use on the caller's loop
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._slots = asyncio.Semaphore(self.max_parallel)
        started = time.monotonic()
        record = CheckRecord(
            environment=target.environment,
            action=CheckAction.UP_TO_DATE,
            strategy=target.strategy.value,
        )
        lock = CacheLock(target.manager.store.path)
        try:
            if not lock.acquire():
                record.action = CheckAction.SKIPPED_RUNNING
                record.reason = "another watcher or a sync is checking or syncing this environment"
            else:
                await self._check_locked(target, record)
        except Exception as exc:  # a bug must not end the watch: recorded, logged
            log.exception("watch: the check of %s failed unexpectedly", target.environment)
            record.action = CheckAction.FAILED
            record.error = f"internal error ({type(exc).__name__}: {exc})"
        finally:
            lock.release()
            target.running_session_id = None
        record.seconds = round(time.monotonic() - started, 3)
        record.error = _redacted(record.error, target)
        record.reason = _redacted(record.reason, target)
        try:
            await target.manager.store.run(target.manager.store.checks.record, record)
        except D365SyncError as exc:
            log.error("watch: the check record was not saved (%s)", exc)
        target.last = record
        self._emit("check", target, record, reason=record.reason, error=record.error)
        return record

    async def _check_locked(self, target: WatchTarget, record: CheckRecord) -> None:
        manager = target.manager
        try:
            status = await check_version(manager, target.strategy, retry_base=self.retry_base)
        except D365SyncError as exc:
            record.action = CheckAction.FAILED
            record.error = str(exc)
            await self._notify_failure(
                target, record, None, activity_id=getattr(exc, "activity_id", None)
            )
            return
        _fill(record, status)
        if status.running_session_id is not None:
            record.action = CheckAction.SKIPPED_RUNNING
            return
        if not status.due:
            record.action = (
                CheckAction.BACKING_OFF if status.retry_at is not None else CheckAction.UP_TO_DATE
            )
            return
        assert self._slots is not None and self._stop is not None
        async with self._slots:
            if self._stop.is_set():
                record.action = CheckAction.CANCELLED
                record.reason = f"{record.reason}; the watch was stopped before the sync started"
                return
            session = await self._sync(target, record)
        if session is None:
            return
        record.action = {
            SyncStatus.COMPLETED: CheckAction.SYNCED,
            SyncStatus.CANCELLED: CheckAction.CANCELLED,
        }.get(session.status, CheckAction.FAILED)
        record.error = session.error
        if session.status == SyncStatus.COMPLETED:
            await self._notify_completed(target, record, session)
        elif session.status == SyncStatus.FAILED:
            await self._notify_failure(target, record, session)

    async def _sync(self, target: WatchTarget, record: CheckRecord) -> SyncSession | None:
        """Start the sync and wait for it; None when it could not start (recorded)."""
        manager = target.manager
        try:
            result = await manager.start(
                None, target.strategy, initiated_by=INITIATED_BY, force=True, lock_held=True
            )
        except SessionConflictError as exc:
            record.action, record.reason = CheckAction.SKIPPED_RUNNING, str(exc)
            return None
        except D365SyncError as exc:
            record.action, record.error = CheckAction.FAILED, str(exc)
            await self._notify_failure(
                target, record, None, activity_id=getattr(exc, "activity_id", None)
            )
            return None
        record.global_version_id = result.global_version_id
        if result.session_id is None:
            record.action = CheckAction.UP_TO_DATE
            return None
        session_id = record.session_id = target.running_session_id = result.session_id
        self._emit("sync_started", target, record, strategy=target.strategy.value)
        self._status(target)
        if self._stop is not None and self._stop.is_set():  # stopped while it was starting
            self._cancel_soon(target, session_id)
        session = await manager.wait(session_id)
        target.running_session_id = None
        self._emit(
            "sync_finished",
            target,
            record,
            status=session.status.value,
            duration_seconds=session.duration_seconds,
            error=_redacted(session.error, target),
        )
        return session

    # -- notifications -------------------------------------------------------------------
    async def _notify_completed(
        self, target: WatchTarget, record: CheckRecord, session: SyncSession
    ) -> None:
        changed = record.previous_version_id is not None and record.version_changed
        notice = Notice(
            event="version_changed" if changed else "sync_completed",
            environment=target.environment,
            global_version_id=record.global_version_id,
            application_version=record.application_version,
            session=session_brief(session),
            changes=_changes(target.manager, record) if changed else None,
            verdict=_diagnosis(target.manager, session)[0] if session.http.throttled else None,
        )
        await self._send(target, record, notice)

    async def _notify_failure(
        self,
        target: WatchTarget,
        record: CheckRecord,
        session: SyncSession | None,
        *,
        activity_id: str | None = None,
    ) -> None:
        """Tell of a failure once: not again while the failures go on."""
        manager = target.manager
        last = manager.store.checks.last_outcome()
        if last is not None and last.action == CheckAction.FAILED:
            recovered = manager.store.history.load(status="completed", since=last.checked_at)
            if not recovered:
                record.reason = _join(record.reason, "the failure was already notified")
                return
        verdict = None
        if session is not None:
            verdict, found = _diagnosis(manager, session)
            activity_id = found or activity_id
        notice = Notice(
            event="sync_failed",
            environment=target.environment,
            global_version_id=record.global_version_id,
            application_version=record.application_version,
            session=session_brief(session) if session is not None else None,
            verdict=verdict,
            error=record.error,
            activity_id=activity_id,
        )
        await self._send(target, record, notice)

    async def _send(self, target: WatchTarget, record: CheckRecord, notice: Notice) -> None:
        for destination in target.notify:
            try:
                attempts = await deliver(destination, notice, delays=self.notify_delays)
            except NotifyError as exc:
                record.notify_failed += 1
                log.warning("watch: notification not delivered: %s", exc)
                self._emit(
                    "notify_failed", target, record, target=str(destination), error=str(exc),
                    notice=notice.event,
                )  # fmt: skip
            else:
                record.notified += 1
                self._emit(
                    "notified", target, record, target=str(destination), attempts=attempts,
                    notice=notice.event,
                )  # fmt: skip

    # -- events --------------------------------------------------------------------------
    def _status(self, target: WatchTarget) -> None:
        if self.on_status is not None:
            try:
                self.on_status(target)
            except Exception:
                log.exception("watch: a status listener failed")

    def _emit(self, event: str, watched: WatchTarget, record: CheckRecord, **extra: Any) -> None:
        if self.on_event is None:
            return
        data: dict[str, Any] = {
            "event": event,
            "time": iso(utcnow()),
            "environment": watched.environment,
            "global_version_id": record.global_version_id,
            "action": record.action.value if event == "check" else None,
            "session_id": record.session_id,
        }
        if event == "check":
            data.update(
                application_version=record.application_version,
                previous_version_id=record.previous_version_id,
                notified=record.notified,
                notify_failed=record.notify_failed,
                seconds=record.seconds,
            )
        data.update(extra)
        try:
            self.on_event(redact(data, watched.secrets))
        except Exception:  # a broken printer must not end the watch
            log.exception("watch: an event listener failed")


def session_brief(session: SyncSession) -> dict[str, Any]:
    """The ``session`` object of a notification."""
    return {
        "session_id": session.session_id,
        "status": session.status.value,
        "strategy": session.strategy.value,
        "duration_seconds": round(session.duration_seconds, 3),
        "counts": dict(session.counts),
    }


def session_notice(manager: SyncSessionManager, session: SyncSession) -> Notice:
    """The notice of a session that ended (completed, failed or cancelled) outside a watch, e.g.
    one started in the background from a notebook: a failure carries its one-line error, the
    diagnose verdict and the activity id of its last failed request."""
    event = {SyncStatus.FAILED: "sync_failed", SyncStatus.CANCELLED: "sync_cancelled"}.get(
        session.status, "sync_completed"
    )
    verdict, activity_id = _diagnosis(manager, session) if event == "sync_failed" else (None, None)
    return Notice(
        event=event,
        environment=manager.settings.base_url,
        global_version_id=session.global_version_id,
        session=session_brief(session),
        verdict=verdict,
        error=session.error if event == "sync_failed" else None,
        activity_id=activity_id,
    )


def exit_code(records: Sequence[CheckRecord]) -> int:
    """``watch --once``: 0 up to date or synced, 1 failed, 130 cancelled (the worst of all)."""
    return max((EXIT_CODES[r.action] for r in records), default=0)


def event_text(event: dict[str, Any]) -> str:
    """One readable line per watch event (``--json`` prints the dict instead)."""
    name, env = event["event"], event["environment"]
    version = f" version {event['global_version_id']}" if event.get("global_version_id") else ""
    if name == "check":
        app = f" ({event['application_version']})" if event.get("application_version") else ""
        action = CheckAction(event["action"])
        why = event.get("error") or event.get("reason")
        words = "skipped" if action is CheckAction.SKIPPED_RUNNING and why else ACTION_WORDS[action]
        return f"{event['time']} {env}: check{version}{app}: {words}" + (f" ({why})" if why else "")
    if name == "sync_started":
        return f"{event['time']} {env}: sync started{version} (session {event['session_id']})"
    if name == "sync_finished":
        error = f": {event['error']}" if event.get("error") else ""
        return (
            f"{event['time']} {env}: sync {event['status']} in "
            f"{event['duration_seconds']:.1f} s{error}"
        )
    if name == "notified":
        return f"{event['time']} {env}: notified {event['target']} ({event['notice']})"
    return f"{event['time']} {env}: notification failed: {event.get('error')}"


def _fill(record: CheckRecord, status: VersionStatus) -> None:
    record.global_version_id = status.global_version_id
    record.application_version = status.application_version
    record.platform_version = status.platform_version
    record.previous_version_id = status.cached_version_id
    record.reason = status.reason


def _changes(manager: SyncSessionManager, record: CheckRecord) -> dict[str, Any] | None:
    """The explorer's diff summary from the previous complete version to the new one."""
    try:
        diff = manager.explorer.diff(record.previous_version_id, record.global_version_id)
    except D365SyncError as exc:
        log.warning("watch: no diff for the notification (%s)", exc)
        return None
    return {
        "summary": diff.summary_text,
        "by_kind": diff.summary,
        "from_global_version_id": record.previous_version_id,
        "from_application_version": diff.from_version.get("application_version"),
    }


def _diagnosis(manager: SyncSessionManager, session: SyncSession) -> tuple[str, str | None]:
    """The diagnose verdict and the activity id of the last failed request, if any."""
    found = diagnostics.diagnose_session(manager, session.session_id)
    ids = [r["activity_id"] for r in found.failed_requests if r.get("activity_id")]
    return found.verdict, (ids[-1] if ids else None)


def _redacted(text: str | None, target: WatchTarget) -> str | None:
    return None if text is None else redact(text, target.secrets)


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second
