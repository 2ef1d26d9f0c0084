"""The session manager: starts, tracks, cancels and records sync sessions of one environment.

One manager per cache file serves every surface of a process (the registry in
:mod:`d365sync_nb.connection` owns it). The manager orchestrates: it checks a start request,
runs the first two phases (initializing, version check) while the caller waits, then hands the
session to a :class:`~d365sync_nb.sync.runner.SessionRunner` task on the caller's loop. ``wait``
and ``cancel_sync_session`` work from any loop. Persisting a session is the
:class:`~d365sync_nb.sync.recorder.SessionRecorder`'s job; parsing what a user typed (ids,
prefixes, dates, statuses) is :mod:`d365sync_nb.sync.lookup`'s; reading history is the store's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from d365sync_nb.config import ConnectionSettings, parse_languages
from d365sync_nb.d365.auth import TokenCredential, TokenProvider, make_credential
from d365sync_nb.d365.client import D365MetadataClient
from d365sync_nb.errors import (
    ConfigurationError,
    RequestLogUnavailable,
    SessionConflictError,
    SessionNotFoundError,
)
from d365sync_nb.explorer import MetadataExplorer
from d365sync_nb.metadata import EnvironmentVersion
from d365sync_nb.models import (
    DEFAULT_PHASE_WEIGHTS,
    StartResult,
    SyncPhase,
    SyncSession,
    SyncStrategy,
)
from d365sync_nb.store import LIVE_SESSIONS, MetadataStore, find_shared_build, store_path
from d365sync_nb.store.lock import SharedHold, hold_shared
from d365sync_nb.sync.lookup import (
    as_limit,
    as_session_id,
    as_status,
    as_time,
    as_version_id,
    check_phase,
    session_id_from_prefix,
)
from d365sync_nb.sync.plan import SharingSource, SyncPlan, make_plan, needs_sync
from d365sync_nb.sync.progress import CallbackHub, ProgressCallback, ProgressReporter
from d365sync_nb.sync.recorder import SessionRecorder
from d365sync_nb.sync.runner import SessionRunner

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the process running this session stopped before it finished"
_NOTIFY_INTERVAL = "SyncSessionManager.notify_interval is deprecated: use progress_interval"
VERSION_REQUESTS = 3  # GetInstalledModules, GetApplicationVersion, GetPlatformBuildVersion


@dataclass
class _Running:
    """A session, its runner and the task running it (on the loop that started it)."""

    session: SyncSession
    task: asyncio.Task[None]
    runner: SessionRunner
    lock: SharedHold | None  # its part of the process's hold of the cache's lock (not a watch's)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.task.get_loop()

    def on_other_loop(self) -> bool:
        """True when called from a loop other than the one the session runs on."""
        return asyncio.get_running_loop() is not self.loop


class SyncSessionManager:
    """Sync sessions of one environment: start, progress, cancel, active list, history."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        credential: TokenCredential | None = None,
        transport_factory: Any = None,
        client_options: dict[str, Any] | None = None,
        repair_cache: bool = False,
    ) -> None:
        """``repair_cache``: a damaged cache file is moved aside and a new one started (for
        surfaces about to sync); without it a damaged file is a CacheDamagedError."""
        self.settings = settings
        cred = credential if credential is not None else make_credential(settings)
        self._tokens = TokenProvider(cred, settings.base_url) if cred is not None else None
        self._transport_factory = transport_factory
        self._client_options = client_options or {}
        path = store_path(settings.resolved_cache_dir(), settings.environment_name)
        self.store = MetadataStore(path, repair=repair_cache)
        self.interrupted_sessions = self.store.history.mark_interrupted(INTERRUPTED)
        self.store.builds.discard_orphans()
        self.closed = False
        self._close_when_idle = False
        self._running: dict[str, _Running] = {}
        self.recorder = SessionRecorder(self.store, settings.request_log_sessions)
        self._hub = CallbackHub()
        self._starting: set[int] = set()

    def __repr__(self) -> str:
        return (
            f"SyncSessionManager(environment={self.settings.base_url!r}, "
            f"cache={str(self.store.path)!r}, running={len(self._running)})"
        )

    @property
    def cache_notice(self) -> str | None:
        """What happened to a damaged cache file when this manager opened it, if anything."""
        moved = self.store.db.moved_aside
        if moved is None:
            return None
        return (
            f"The cache file {self.store.path} was damaged: it was moved to {moved} (kept) "
            "and a new one was started"
        )

    @property
    def request_log_sessions(self) -> int:
        """How many of the most recent sessions keep their request log (0: none)."""
        return self.recorder.request_log_sessions

    @request_log_sessions.setter
    def request_log_sessions(self, count: int) -> None:
        self.recorder.request_log_sessions = int(count)

    @property
    def progress_interval(self) -> float:
        """Least seconds between two progress snapshots of a session within a phase."""
        return self._hub.interval

    @progress_interval.setter
    def progress_interval(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ConfigurationError(f"progress_interval must be 0 or more seconds, not {seconds}")
        self._hub.interval = float(seconds)

    @property
    def notify_interval(self) -> float:
        """Deprecated name of :attr:`progress_interval`."""
        warnings.warn(_NOTIFY_INTERVAL, DeprecationWarning, stacklevel=2)
        return self.progress_interval

    @notify_interval.setter
    def notify_interval(self, seconds: float) -> None:
        warnings.warn(_NOTIFY_INTERVAL, DeprecationWarning, stacklevel=2)
        self.progress_interval = seconds

    def new_client(self) -> D365MetadataClient:
        transport: httpx.AsyncBaseTransport | None = (
            self._transport_factory() if self._transport_factory else None
        )
        return D365MetadataClient.from_settings(
            self.settings, token_provider=self._tokens, transport=transport, **self._client_options
        )

    # -- version -----------------------------------------------------------------------
    async def detect_version(self) -> tuple[int, EnvironmentVersion]:
        """Ask the environment for its modules; return the cached version id for them."""
        async with self.new_client() as client:
            env = await client.get_environment_version()
        version_id = await self.store.run(self.store.versions.upsert_version, env)
        return version_id, env

    # -- start -------------------------------------------------------------------------
    async def start(
        self,
        global_version_id: int | str | None = None,
        strategy: str | SyncStrategy = SyncStrategy.FULL,
        initiated_by: str = "user",
        *,
        force: bool = False,
        languages: str | Sequence[str] | None = None,
        lock_held: bool = False,
    ) -> StartResult:
        """Start a session (detecting the version) or say it is already up to date.

        ``global_version_id`` may be typed text (``"2"``); it must name a cached version, the
        one the environment runs now. The initializing and version-check phases run while the
        caller waits; the rest runs as a task. The session holds the cache's
        lock (:func:`~d365sync_nb.store.lock.hold_shared`) until it ends (``lock_held``: the
        caller, a watch, already holds it). Raises ConfigurationError for bad arguments,
        SessionConflictError when a session is already running for the version or another
        process holds the cache's lock, and D365Error when the environment cannot be reached (no
        session is recorded then).
        """
        strategy = SyncStrategy.parse(strategy)
        wanted = parse_languages(languages) or self.settings.sync_languages
        if self.closed:
            raise ConfigurationError("This connection was closed; connect again to sync")
        session = SyncSession(
            session_id=str(uuid.uuid4()),
            environment=self.settings.base_url,
            strategy=strategy,
            initiated_by=initiated_by,
        )
        client = self.new_client()  # the session's client: version check, then the runner
        # silent until the session is registered: listeners never see one that is not kept
        reporter = ProgressReporter(session, CallbackHub(self._hub.interval), client=client)
        try:
            reporter.begin(SyncPhase.INITIALIZING)
            requested = (
                None if global_version_id is None else self._known_version(global_version_id)
            )
            self._apply_weights(session)
            reporter.end(SyncPhase.INITIALIZING)
            version_id, env = await self._check_version(reporter, client)
            if requested is not None and requested != version_id:
                raise ConfigurationError(
                    f"Version {requested} is not what the environment runs now (its modules "
                    f"are version {version_id}); omit the version or pass {version_id}"
                )
            session.global_version_id = version_id
            self._check_not_running(version_id)
            lock = None if lock_held else self._take_lock()
            self._starting.add(version_id)  # no await between the checks and this line
            try:
                return await self._start_version(
                    session, reporter, client, env, force, wanted, lock
                )
            finally:
                self._starting.discard(version_id)
                if lock is not None and session.session_id not in self._running:
                    lock.release()
        finally:
            if session.session_id not in self._running:  # up to date, or refused: no task
                await client.aclose()

    async def start_sync_session(
        self,
        global_version_id: int | str | None = None,
        strategy: str | SyncStrategy = SyncStrategy.FULL,
        initiated_by: str = "user",
        *,
        force: bool = False,
    ) -> str | None:
        """The seed's API: the new session's id, or None when already up to date."""
        result = await self.start(global_version_id, strategy, initiated_by, force=force)
        return result.session_id

    def _known_version(self, value: Any) -> int:
        version_id = as_version_id(value)
        if self.store.versions.get_version(version_id) is None:
            known = (
                ", ".join(str(v["id"]) for v in self.store.versions.list_versions()) or "none yet"
            )
            raise ConfigurationError(
                f"Unknown global version {version_id} (known: {known}); "
                "omit the version to detect it from the environment"
            )
        return version_id

    async def _check_version(
        self, reporter: ProgressReporter, client: D365MetadataClient
    ) -> tuple[int, EnvironmentVersion]:
        """The version-check phase: ask the environment which modules it runs."""
        phase = SyncPhase.VERSION_CHECK
        reporter.begin(phase, total=VERSION_REQUESTS, item="GetInstalledModules")
        env = await client.get_environment_version()
        reporter.advance(phase, VERSION_REQUESTS)
        version_id = await self.store.run(self.store.versions.upsert_version, env)
        reporter.end(
            phase,
            note=f"version {version_id}: {len(env.modules)} modules, application "
            f"{env.application_version or 'unknown'}",
        )
        return version_id, env

    def _take_lock(self) -> SharedHold:
        """A part of this process's hold of the cache's lock; a conflict when a watch or another
        process holds the lock."""
        lock = hold_shared(self.store.path)
        if lock is None:
            raise SessionConflictError(
                "Another sync or a watch is checking or syncing this cache right now (it holds "
                f"{self.store.path.name}.sync.lock); wait for it, or see 'd365sync checks' and "
                "'d365sync history'",
                elsewhere=True,
            )
        return lock

    def _check_not_running(self, version_id: int) -> None:
        for other in self.store.history.running_elsewhere():
            if other["global_version_id"] == version_id:
                raise SessionConflictError(
                    f"Session {other['session_id']} is already syncing version {version_id} "
                    f"in another process (pid {other['pid']}); wait for it or stop that process",
                    elsewhere=True,
                )
        for running in self._running.values():
            if running.session.global_version_id == version_id:
                raise SessionConflictError(
                    f"Session {running.session.session_id} is already syncing version "
                    f"{version_id} ({running.session.progress_percent:.0f}% done); follow or "
                    "cancel it before starting another"
                )
        if version_id in self._starting:
            raise SessionConflictError(
                f"A session for version {version_id} is being started right now; follow that "
                "one instead of starting another"
            )

    async def _start_version(
        self,
        session: SyncSession,
        reporter: ProgressReporter,
        client: D365MetadataClient,
        env: EnvironmentVersion,
        force: bool,
        languages: tuple[str, ...],
        lock: SharedHold | None,
    ) -> StartResult:
        version_id = session.global_version_id
        assert version_id is not None
        strategy = session.strategy
        version = self.store.versions.get_version(version_id)
        if not force and not needs_sync(strategy, version, languages, self._languages_of(version)):
            result = StartResult(
                session_id=None,
                global_version_id=version_id,
                strategy=strategy,
                up_to_date=True,
                synced_at=version["synced_at"] if version else None,
                message="",
            )
            result.message = f"{result.up_to_date_sentence}; pass force=True to sync it again"
            return result
        plan = self._plan(strategy, version_id, version, env)
        session.message = plan.message
        LIVE_SESSIONS.add(session.session_id)
        try:
            await self.store.run(self.store.history.save, session.model_copy(deep=True))
        except BaseException:
            LIVE_SESSIONS.discard(session.session_id)
            raise
        reporter.on_transition = functools.partial(self.recorder.persist, client=client)
        runner = SessionRunner(
            session,
            plan,
            client,
            self.store,
            reporter,
            languages=languages,
            log_requests=self.request_log_sessions > 0,
        )
        task = asyncio.create_task(self._run(runner), name=f"d365sync-{session.session_id}")
        self._running[session.session_id] = _Running(session, task, runner, lock)
        reporter.hub = self._hub
        reporter.notify(force=True)  # listeners (a dashboard) see the new session at once
        return StartResult(
            session_id=session.session_id,
            global_version_id=version_id,
            strategy=strategy,
            up_to_date=False,
            message=f"Started a '{strategy}' sync of version {version_id}"
            + (f". {plan.message}" if plan.message else ""),
        )

    def _languages_of(self, version: dict[str, Any] | None) -> set[str]:
        """The languages the version's visible build has labels in."""
        if not version or version.get("current_build_id") is None:
            return set()
        return self.store.rows.build_languages(version["current_build_id"])

    def _plan(
        self,
        strategy: SyncStrategy,
        version_id: int,
        version: dict[str, Any] | None,
        env: EnvironmentVersion,
    ) -> SyncPlan:
        previous = version["current_build_id"] if version else None
        complete = bool(version and version["has_metadata"])
        if strategy == SyncStrategy.LABELS_ONLY and (previous is None or not complete):
            raise ConfigurationError(
                f"'labels_only' needs the metadata of version {version_id} in the cache; "
                "run 'full_without_labels' or 'full' first"
            )
        sharing = None
        if strategy == SyncStrategy.SHARING_MODE:
            found = find_shared_build(
                self.settings.resolved_cache_dir(), env.modules_hash, self.store.path
            )
            if found:
                sharing = SharingSource(
                    path=found["path"],
                    build_id=found["build_id"],
                    environment=found["environment"],
                    has_labels=found["has_labels"],
                )
        return make_plan(strategy, previous, sharing, previous_complete=complete)

    def _apply_weights(self, session: SyncSession) -> None:
        """Weight phases by this environment's past seconds per phase, else by defaults."""
        history = self.store.history.phase_seconds(session.strategy.value)
        known = {SyncPhase(k): v for k, v in history.items() if k in SyncPhase.__members__.values()}
        scale = 1.0
        if known:
            default_sum = sum(DEFAULT_PHASE_WEIGHTS[p] for p in known)
            scale = max(sum(known.values()), 1e-3) / default_sum
        for phase, progress in session.phases.items():
            progress.weight = max(known.get(phase, DEFAULT_PHASE_WEIGHTS[phase] * scale), 1e-3)

    # -- running -----------------------------------------------------------------------
    async def _run(self, runner: SessionRunner) -> None:
        try:
            await runner.execute()
        finally:
            await self._finish(runner)

    async def _finish(self, runner: SessionRunner) -> None:
        """Record the outcome, close the session's client, and let the session go."""
        session = runner.session
        try:
            await asyncio.shield(self.recorder.final_save(session, runner.client))
            await asyncio.shield(runner.client.aclose())  # already closed once it ran
        finally:  # even when a late cancel interrupts the save
            running = self._running.pop(session.session_id, None)
            if running is not None and running.lock is not None:
                running.lock.release()
            LIVE_SESSIONS.discard(session.session_id)
            runner.reporter.notify(force=True)
            self._hub.forget(session.session_id)
            if self._close_when_idle and not self._running:
                self._close_store()

    # -- follow ------------------------------------------------------------------------
    def get_sync_session(self, session_id: str) -> SyncSession:
        """A running session (live) or a finished one (from history)."""
        session_id = as_session_id(session_id)
        running = self._running.get(session_id)
        if running is not None:
            return running.session
        found = self.recorder.unsaved(session_id) or self.store.history.get(session_id)
        if found is None:
            raise SessionNotFoundError(f"No sync session with id {session_id!r}")
        return found

    def get_active_sessions(self) -> list[SyncSession]:
        return [r.session for r in self._running.values()]

    def get_session_history(
        self,
        limit: int = 20,
        status: str | None = None,
        *,
        strategy: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        version: int | str | None = None,
    ) -> list[SyncSession]:
        """Recorded sessions, newest first (running ones included, with their live state),
        filtered by status, strategy, global version and start time (``since`` <= started <
        ``until``; dates or ISO times, naive ones meaning UTC)."""
        stored = self.store.history.load(
            limit=as_limit(limit),
            status=as_status(status),
            strategy=None if strategy is None else SyncStrategy.parse(strategy).value,
            since=as_time(since, "since"),
            until=as_time(until, "until"),
            version=None if version is None else as_version_id(version),
        )
        return [self._live(s) for s in stored]

    def get_request_log(
        self, session_id: str, *, status: str | None = None, phase: str | None = None
    ) -> list[dict[str, Any]]:
        """One row per attempt a session sent, in order (see ``SessionHistory.requests``).

        Raises SessionNotFoundError for an unknown id, ConfigurationError for a bad filter,
        RequestLogUnavailable for a session whose log was pruned (the most recent keep one).
        """
        session = self.get_sync_session(session_id)
        check_phase(phase)
        if self.store.history.request_log_pruned(session.session_id):
            raise RequestLogUnavailable(
                f"The request log of session {session.session_id} was pruned: only the "
                f"{self.request_log_sessions} most recent sessions keep one (its aggregates "
                "are in its http record)"
            )
        return self.store.history.requests(session.session_id, status=status, phase=phase)

    def _live(self, stored: SyncSession) -> SyncSession:
        running = self._running.get(stored.session_id)
        return running.session if running else self.recorder.unsaved(stored.session_id) or stored

    def find_session_id(self, text: str | None, *, running_only: bool = False) -> str:
        """A full session id from an id, a unique prefix (4+ characters), or None (the latest
        session; the latest running one with ``running_only``). SessionNotFoundError else."""
        if text is None or not str(text).strip():
            if running_only:
                active = self.get_active_sessions()
                if not active:
                    raise SessionNotFoundError("No session is running")
                return active[-1].session_id
            latest = self.latest_session_id()
            if latest is None:
                raise SessionNotFoundError("No sync session recorded yet: start one first")
            return latest
        return session_id_from_prefix(text, self._ids_starting_with)

    def _ids_starting_with(self, prefix: str) -> list[str]:
        running = [i for i in self._running if i.startswith(prefix)]
        return running + self.store.history.ids_starting_with(prefix)

    def latest_session_id(self) -> str | None:
        if self._running:
            return list(self._running)[-1]
        return self.store.history.latest_id()

    async def wait(self, session_id: str) -> SyncSession:
        """Wait until a session ends; return its final state."""
        running = self._running.get(as_session_id(session_id))
        if running is not None and running.on_other_loop():
            ended = asyncio.run_coroutine_threadsafe(self.wait(session_id), running.loop)
            return await asyncio.wrap_future(ended)
        if running is not None:
            await asyncio.wait([running.task])  # never raises, even for a cancelled task
        return self.get_sync_session(session_id)

    def add_progress_callback(self, session_id: str, callback: ProgressCallback) -> None:
        """Call ``callback(snapshot)`` (sync or async) as this session progresses (~10/s)."""
        session = self.get_sync_session(session_id)  # unknown id: a clear error now
        self._hub.add(session.session_id, callback)

    def remove_progress_callback(self, session_id: str, callback: ProgressCallback) -> None:
        self._hub.remove(as_session_id(session_id), callback)

    def add_listener(self, callback: ProgressCallback) -> None:
        """Call ``callback(snapshot)`` for every session of this manager."""
        self._hub.add_listener(callback)

    def remove_listener(self, callback: ProgressCallback) -> None:
        self._hub.remove_listener(callback)

    # -- cancel ------------------------------------------------------------------------
    async def cancel_sync_session(self, session_id: str) -> bool:
        """Cancel a running session and wait until it has stopped; False if it had ended.

        When this returns, no further request is sent and the unfinished build is gone.
        """
        session_id = as_session_id(session_id)
        running = self._running.get(session_id)
        if running is None:
            self.get_sync_session(session_id)  # raises SessionNotFoundError when unknown
            return False
        if running.on_other_loop():  # e.g. a widget or tool on another thread's loop
            done = asyncio.run_coroutine_threadsafe(
                self.cancel_sync_session(session_id), running.loop
            )
            return await asyncio.wrap_future(done)
        if running.session.status.is_final:  # it is only saving its outcome
            await asyncio.wait([running.task])
            return False
        if not running.task.cancelling():  # a second cancel waits for the first
            running.task.cancel()
        await asyncio.wait([running.task])
        if not running.session.status.is_final:  # cancelled before its task ever ran
            running.runner.cancelled_before_start()
            await self._finish(running.runner)
        return True

    # -- cache -------------------------------------------------------------------------
    def cache_summary(self) -> dict[str, Any]:
        """What the cache holds: versions with counts, labels, sessions recorded."""
        return {
            "environment": self.settings.base_url,
            "cache_file": str(self.store.path),
            "versions": self.store.versions.summaries(),
            "labels": self.store.rows.label_stats(self.settings.language),
            "sessions_recorded": self.store.history.count(),
        }

    def search(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        return self.store.index.search(text, limit=limit)

    @property
    def explorer(self) -> MetadataExplorer:
        """Tables, diffs and exports of this environment's cached metadata."""
        return MetadataExplorer(self.store, self.settings.language)

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the cache now, or as soon as the last running session has ended."""
        if self._running:
            self._close_when_idle = True
        else:
            self._close_store()

    def keep_open(self) -> None:
        """Undo a pending close (a new lease arrived before the last session ended)."""
        self._close_when_idle = False

    def _close_store(self) -> None:
        if not self.closed:
            self.closed = True
            self.store.close()

    async def aclose(self) -> None:
        """Cancel running sessions and close the cache."""
        for session_id in list(self._running):
            await self.cancel_sync_session(session_id)
        self._close_store()
