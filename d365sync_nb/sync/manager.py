"""The session manager: starts, tracks, cancels and records sync sessions of one environment.

One manager per environment serves every surface (notebook, tools/MCP, CLI). Sessions run as
asyncio tasks on the loop that started them (``wait`` and ``cancel_sync_session`` work from any
other loop too); history is persisted in the environment's cache.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from d365sync_nb.config import ConnectionSettings
from d365sync_nb.d365.auth import TokenCredential, TokenProvider, make_credential
from d365sync_nb.d365.client import D365MetadataClient
from d365sync_nb.errors import (
    ConfigurationError,
    D365SyncError,
    SessionConflictError,
    SessionNotFoundError,
)
from d365sync_nb.metadata import EnvironmentVersion
from d365sync_nb.models import (
    DEFAULT_PHASE_WEIGHTS,
    PHASES,
    PhaseProgress,
    PhaseStatus,
    StartResult,
    SyncPhase,
    SyncSession,
    SyncStatus,
    SyncStrategy,
    utcnow,
)
from d365sync_nb.store.cache import LIVE_SESSIONS, MetadataStore, find_shared_build, store_path
from d365sync_nb.sync.plan import SharingSource, make_plan, needs_sync
from d365sync_nb.sync.progress import CallbackHub, ProgressCallback, ProgressReporter
from d365sync_nb.sync.runner import SessionRunner

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the process running this session stopped before it finished"


@dataclass
class _Running:
    session: SyncSession
    task: asyncio.Task[None]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.task.get_loop()

    def elsewhere(self) -> bool:
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
        notify_interval: float = 0.1,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        cred = credential if credential is not None else make_credential(settings)
        self._tokens = TokenProvider(cred, settings.base_url) if cred is not None else None
        self._transport_factory = transport_factory
        self._client_options = client_options or {}
        self._notify_interval = notify_interval
        cache_dir = settings.resolved_cache_dir()
        self.store = MetadataStore(store_path(cache_dir, settings.environment_name))
        self.interrupted_sessions = self.store.mark_interrupted(INTERRUPTED)
        self.store.discard_orphan_builds()
        self._running: dict[str, _Running] = {}
        self._hub = CallbackHub()
        self._saves: set[asyncio.Future[None]] = set()
        self._starting: set[int] = set()

    def __repr__(self) -> str:
        return (
            f"SyncSessionManager(environment={self.settings.base_url!r}, "
            f"cache={str(self.store.path)!r}, running={len(self._running)})"
        )

    def new_client(self) -> D365MetadataClient:
        transport: httpx.AsyncBaseTransport | None = (
            self._transport_factory() if self._transport_factory else None
        )
        return D365MetadataClient.from_settings(
            self.settings,
            token_provider=self._tokens,
            transport=transport,
            **self._client_options,
        )

    # -- version -----------------------------------------------------------------------
    async def detect_version(self) -> tuple[int, EnvironmentVersion]:
        """Ask the environment for its modules; return the cached version id for them."""
        async with self.new_client() as client:
            env = await client.get_environment_version()
        version_id = await self.store.run(self.store.upsert_version, env)
        return version_id, env

    # -- start -------------------------------------------------------------------------
    async def start(
        self,
        global_version_id: int | None = None,
        strategy: str | SyncStrategy = SyncStrategy.FULL,
        initiated_by: str = "user",
        *,
        force: bool = False,
    ) -> StartResult:
        """Start a session (detecting the version when none is given) or say it is up to date.

        Raises ConfigurationError for bad arguments, SessionConflictError when a session is
        already running for the version, and D365Error when the environment cannot be reached.
        """
        strategy = SyncStrategy.parse(strategy)
        if global_version_id is not None:
            global_version_id = _as_version_id(global_version_id)
            if self.store.get_version(global_version_id) is None:
                known = ", ".join(str(v["id"]) for v in self.store.list_versions()) or "none yet"
                raise ConfigurationError(
                    f"Unknown global version {global_version_id} (known: {known}); "
                    "omit the version to detect it from the environment"
                )
        version_id, env = await self.detect_version()
        if global_version_id is not None and global_version_id != version_id:
            raise ConfigurationError(
                f"Version {global_version_id} is not what the environment runs now "
                f"(its modules are version {version_id}); omit the version or pass {version_id}"
            )
        for other in self.store.running_elsewhere():
            if other["global_version_id"] == version_id:
                raise SessionConflictError(
                    f"Session {other['session_id']} is already syncing version {version_id} "
                    f"in another process (pid {other['pid']}); wait for it or stop that process"
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
                f"A session for version {version_id} is being started right now; follow it "
                "(d365fo_list_sync_sessions / get_active_sessions) instead of starting another"
            )
        self._starting.add(version_id)  # no await between the checks above and this line
        try:
            return await self._start_version(version_id, env, strategy, initiated_by, force)
        finally:
            self._starting.discard(version_id)

    async def _start_version(
        self,
        version_id: int,
        env: EnvironmentVersion,
        strategy: SyncStrategy,
        initiated_by: str,
        force: bool,
    ) -> StartResult:
        version = self.store.get_version(version_id)
        if not force and not needs_sync(strategy, version):
            synced = version["synced_at"] if version else None
            return StartResult(
                session_id=None,
                global_version_id=version_id,
                strategy=strategy,
                up_to_date=True,
                synced_at=synced,
                message=(
                    f"Version {version_id} ({len(env.modules)} modules) is already up to date "
                    f"for '{strategy}' (synced {synced}); pass force=True to sync it again"
                ),
            )
        previous = version["current_build_id"] if version else None
        if strategy == SyncStrategy.LABELS_ONLY and (
            previous is None or not version["has_metadata"]
        ):
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
        plan = make_plan(
            strategy, previous, sharing, previous_complete=bool(version and version["has_metadata"])
        )
        session = SyncSession(
            session_id=str(uuid.uuid4()),
            environment=self.settings.base_url,
            strategy=strategy,
            global_version_id=version_id,
            initiated_by=initiated_by,
            status=SyncStatus.RUNNING,
            message=plan.message,
        )
        self._apply_weights(session)
        LIVE_SESSIONS.add(session.session_id)
        try:
            await self.store.run(self.store.save_session, session.model_copy(deep=True))
        except BaseException:
            LIVE_SESSIONS.discard(session.session_id)
            raise
        task = asyncio.create_task(
            self._run(session, plan, version_id, len(env.modules)),
            name=f"d365sync-{session.session_id}",
        )
        self._running[session.session_id] = _Running(session, task)
        return StartResult(
            session_id=session.session_id,
            global_version_id=version_id,
            strategy=strategy,
            up_to_date=False,
            message=f"Started a '{strategy}' sync of version {version_id}"
            + (f". {plan.message}" if plan.message else ""),
        )

    async def start_sync_session(
        self,
        global_version_id: int | None = None,
        strategy: str | SyncStrategy = SyncStrategy.FULL,
        initiated_by: str = "user",
        *,
        force: bool = False,
    ) -> str | None:
        """The seed's API: the new session's id, or None when already up to date."""
        result = await self.start(global_version_id, strategy, initiated_by, force=force)
        return result.session_id

    def _apply_weights(self, session: SyncSession) -> None:
        """Weight phases by this environment's past seconds per phase, else by defaults."""
        history = self.store.phase_seconds(session.strategy.value)
        known = {SyncPhase(k): v for k, v in history.items() if k in SyncPhase.__members__.values()}
        scale = 1.0
        if known:
            default_sum = sum(DEFAULT_PHASE_WEIGHTS[p] for p in known)
            scale = max(sum(known.values()), 1e-3) / default_sum
        for phase, progress in session.phases.items():
            progress.weight = max(known.get(phase, DEFAULT_PHASE_WEIGHTS[phase] * scale), 1e-3)

    async def _run(
        self, session: SyncSession, plan: Any, version_id: int, module_count: int
    ) -> None:
        reporter = ProgressReporter(
            session, self._hub, on_transition=self._persist, interval=self._notify_interval
        )
        client = self.new_client()
        runner = SessionRunner(
            session,
            plan,
            client,
            self.store,
            reporter,
            version_id=version_id,
            module_count=module_count,
            language=self.settings.language,
        )
        try:
            try:
                async with client:
                    await runner.run()
            finally:
                session.requests = client.stats.requests
            session.status = SyncStatus.COMPLETED
            session.current_phase = None
        except asyncio.CancelledError:
            if runner.finalized:  # the cancel came after the new build was committed
                session.status = SyncStatus.COMPLETED
                session.message = "Cancel arrived after the new version was committed; kept it"
                reporter.end(SyncPhase.FINALIZING)
                session.current_phase = None
            else:
                session.status = SyncStatus.CANCELLED
                session.error = None
                await asyncio.shield(runner.discard())
                reporter.fail(session.current_phase, "cancelled", PhaseStatus.CANCELLED)
        except Exception as exc:
            session.status = SyncStatus.FAILED
            session.error = _describe(exc)
            if not isinstance(exc, D365SyncError):
                log.error("sync session %s failed", session.session_id, exc_info=exc)
            await asyncio.shield(runner.discard())
            reporter.fail(session.current_phase, session.error, PhaseStatus.FAILED)
        finally:
            session.completed_at = utcnow()
            try:
                await asyncio.shield(self._final_save(session))
            finally:  # even when a late cancel interrupts the save
                self._running.pop(session.session_id, None)
                LIVE_SESSIONS.discard(session.session_id)
                reporter.notify(force=True)
                self._hub.forget(session.session_id)

    def _persist(self, session: SyncSession) -> None:
        snapshot = session.model_copy(deep=True)
        future = asyncio.ensure_future(self.store.run(self.store.save_session, snapshot))
        self._saves.add(future)
        future.add_done_callback(self._saves.discard)

    async def _final_save(self, session: SyncSession) -> None:
        if self._saves:
            await asyncio.gather(*list(self._saves), return_exceptions=True)
        await self.store.run(self.store.save_session, session.model_copy(deep=True))

    # -- follow ------------------------------------------------------------------------
    def get_sync_session(self, session_id: str) -> SyncSession:
        """A running session (live) or a finished one (from history)."""
        session_id = _as_session_id(session_id)
        running = self._running.get(session_id)
        if running is not None:
            return running.session
        rows = self.store.load_sessions(session_id=session_id, limit=1)
        if not rows:
            raise SessionNotFoundError(f"No sync session with id {session_id!r}")
        return session_from_row(rows[0])

    def get_active_sessions(self) -> list[SyncSession]:
        return [r.session for r in self._running.values()]

    def get_session_history(self, limit: int = 20, status: str | None = None) -> list[SyncSession]:
        """Recorded sessions, newest first (running ones included, with their live state)."""
        if status is not None:
            try:
                status = SyncStatus(status).value
            except ValueError:
                valid = ", ".join(s.value for s in SyncStatus)
                raise ConfigurationError(f"Unknown status {status!r}; one of: {valid}") from None
        sessions = []
        for row in self.store.load_sessions(limit=max(1, int(limit)), status=status):
            running = self._running.get(row["session_id"])
            sessions.append(running.session if running else session_from_row(row))
        return sessions

    def latest_session_id(self) -> str | None:
        if self._running:
            return list(self._running)[-1]
        rows = self.store.load_sessions(limit=1)
        return rows[0]["session_id"] if rows else None

    async def wait(self, session_id: str) -> SyncSession:
        """Wait until a session ends; return its final state."""
        running = self._running.get(_as_session_id(session_id))
        if running is not None and running.elsewhere():
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
        self._hub.remove(_as_session_id(session_id), callback)

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
        session_id = _as_session_id(session_id)
        running = self._running.get(session_id)
        if running is None:
            self.get_sync_session(session_id)  # raises SessionNotFoundError when unknown
            return False
        if running.elsewhere():  # e.g. a widget or tool on another thread's loop
            done = asyncio.run_coroutine_threadsafe(
                self.cancel_sync_session(session_id), running.loop
            )
            return await asyncio.wrap_future(done)
        if running.session.status.is_final:  # it is only saving its outcome
            await asyncio.wait([running.task])
            return False
        running.task.cancel()
        await asyncio.wait([running.task])
        session = running.session
        if not session.status.is_final:  # cancelled before its task ever ran
            session.status = SyncStatus.CANCELLED
            session.completed_at = utcnow()
            await self.store.run(self.store.save_session, session.model_copy(deep=True))
            self._running.pop(session_id, None)
            LIVE_SESSIONS.discard(session_id)
            self._hub.emit(session)
            self._hub.forget(session_id)
        return True

    # -- cache -------------------------------------------------------------------------
    def cache_summary(self) -> dict[str, Any]:
        """What the cache holds: versions with counts, labels, sessions recorded."""
        return {
            "environment": self.settings.base_url,
            "cache_file": str(self.store.path),
            "versions": [
                {
                    "global_version_id": v["id"],
                    "modules": v["module_count"],
                    "application_version": v["application_version"],
                    "platform_version": v["platform_version"],
                    "synced_at": v["synced_at"],
                    "has_metadata": v["has_metadata"],
                    "has_labels": v["has_labels"],
                    "counts": v["counts"],
                }
                for v in self.store.list_versions()
            ],
            "labels": self.store.label_stats(self.settings.language),
            "sessions_recorded": self.store.count_sessions(),
        }

    def search(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        return self.store.search(text, limit=limit)

    async def aclose(self) -> None:
        """Cancel running sessions and close the cache."""
        for session_id in list(self._running):
            await self.cancel_sync_session(session_id)
        self.store.close()


def session_from_row(row: dict[str, Any]) -> SyncSession:
    """Rebuild a SyncSession from a stored history row."""
    phases = {p: PhaseProgress(phase=p) for p in PHASES}
    for p in row.get("phases", []):
        phase = SyncPhase(p["phase"])
        phases[phase] = PhaseProgress(
            phase=phase,
            status=PhaseStatus(p["status"]),
            items_processed=p["items_processed"],
            items_total=p["items_total"],
            current_item=p["current_item"],
            started_at=_dt(p["started_at"]),
            completed_at=_dt(p["completed_at"]),
            error=p["error"],
            weight=p["weight"] or 1.0,
        )
    status = SyncStatus(row["status"])
    current = next(
        (
            ph
            for ph, pr in phases.items()
            if pr.status in (PhaseStatus.RUNNING, PhaseStatus.FAILED, PhaseStatus.CANCELLED)
        ),
        None,
    )
    return SyncSession(
        session_id=row["session_id"],
        environment=row["environment"],
        strategy=SyncStrategy(row["strategy"]),
        status=status,
        global_version_id=row["global_version_id"],
        initiated_by=row["initiated_by"] or "user",
        started_at=_dt(row["started_at"]),
        completed_at=_dt(row["completed_at"]),
        current_phase=current,
        phases=phases,
        counts=row.get("counts") or {},
        error=row["error"],
        message=row["message"],
        requests=row["requests"] or 0,
    )


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _as_session_id(value: str) -> str:
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise SessionNotFoundError(
            f"No sync session with id {value!r} (session ids are UUIDs)"
        ) from None


def _as_version_id(value: Any) -> int:
    try:
        version = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"Global version id must be an integer, not {value!r}") from None
    if version < 1:
        raise ConfigurationError(f"Global version id must be positive, not {version}")
    return version


def _describe(exc: BaseException) -> str:
    if isinstance(exc, D365SyncError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
