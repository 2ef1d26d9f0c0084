"""Is a sync due? The environment's version (3 cheap requests) against the cache.

A sync is due when the version differs from the cache's current complete version, when the
strategy asks for data the cache lacks for it, or when the last session for it failed (retried
with an exponential back-off, never in a tight loop).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from d365sync_nb.models import SyncStatus, SyncStrategy, iso, utcnow
from d365sync_nb.sync.plan import needs_sync

if TYPE_CHECKING:
    from d365sync_nb.sync.manager import SyncSessionManager

DEFAULT_STRATEGY = SyncStrategy.INCREMENTAL
RETRY_BASE_SECONDS = 60.0  # the first retry after a failed session; doubled after each failure
RETRY_CAP_SECONDS = 6 * 3600.0
HISTORY_LOOKBACK = 20  # sessions of the version read to count consecutive failures


@dataclass
class VersionStatus:
    """The live version, the cached one, and whether (and why) a sync is due."""

    environment: str
    global_version_id: int
    application_version: str | None
    platform_version: str | None
    modules: int
    cached_version_id: int | None  # the cache's current complete version (None: none yet)
    cached_application_version: str | None
    version_changed: bool
    due: bool
    reason: str
    strategy: str
    failures: int = 0  # consecutive failed sessions of this version, newest first
    retry_at: datetime | None = None  # when a due retry may start (back-off)
    running_session_id: str | None = None  # a session syncing this version now

    @property
    def backing_off(self) -> bool:
        return self.retry_at is not None and not self.due

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["retry_at"] = iso(self.retry_at)
        return data


def retry_delay(failures: int, base: float = RETRY_BASE_SECONDS) -> float:
    """Seconds to wait after ``failures`` consecutive failed sessions before the next one."""
    if failures <= 0:
        return 0.0
    return float(min(base * 2 ** (failures - 1), max(base, RETRY_CAP_SECONDS)))


def current_complete_version(manager: SyncSessionManager) -> dict[str, Any] | None:
    """The cache's most recently synced version whose metadata is complete."""
    complete = [
        v
        for v in manager.store.versions.list_versions()
        if v["has_metadata"] and v["current_build_id"] is not None and v["synced_at"]
    ]
    return max(complete, key=lambda v: (v["synced_at"], v["id"]), default=None)


async def check_version(
    manager: SyncSessionManager,
    strategy: str | SyncStrategy = DEFAULT_STRATEGY,
    *,
    retry_base: float = RETRY_BASE_SECONDS,
    now: datetime | None = None,
) -> VersionStatus:
    """Ask the environment its version (the 3 version requests) and decide whether to sync.

    Raises the client's D365Error when the environment cannot be reached.
    """
    strategy = SyncStrategy.parse(strategy)
    before = current_complete_version(manager)
    version_id, env = await manager.detect_version()
    version = manager.store.versions.get_version(version_id)
    changed = before is None or before["id"] != version_id
    lacks = needs_sync(strategy, version)
    sessions = manager.store.history.load(version=version_id, limit=HISTORY_LOOKBACK)
    running = _running_session(manager, version_id)
    failures = 0
    for session in sessions:
        if session.status == SyncStatus.RUNNING and session.session_id != running:
            continue  # interrupted and not yet marked: the manager marks it at its next open
        if session.status != SyncStatus.FAILED:
            break
        failures += 1
    status = VersionStatus(
        environment=manager.settings.base_url,
        global_version_id=version_id,
        application_version=env.application_version,
        platform_version=env.platform_version,
        modules=len(env.modules),
        cached_version_id=before["id"] if before else None,
        cached_application_version=before["application_version"] if before else None,
        version_changed=changed,
        due=False,
        reason="",
        strategy=strategy.value,
        failures=failures,
        running_session_id=running,
    )
    label = _version_label(version_id, env.application_version)
    if running is not None:
        status.reason = f"session {running} is syncing {label} now"
        return status
    if failures:
        last = sessions[0]
        status.retry_at = (last.completed_at or last.started_at) + timedelta(
            seconds=retry_delay(failures, retry_base)
        )
        if (now or utcnow()) < status.retry_at:
            status.reason = (
                f"the last {_plural(failures, 'session')} for {label} failed; the next try "
                f"after {status.retry_at:%H:%M:%S} UTC ({last.error or 'no error recorded'})"
            )
            return status
        status.due = True
        status.reason = f"retrying {label}: its last {_plural(failures, 'session')} failed"
    elif changed:
        status.due = True
        status.reason = (
            f"the environment runs {label}, the cache has "
            f"{_version_label(before['id'], before['application_version'])}"
            if before
            else f"the cache has no complete version yet; the environment runs {label}"
        )
    elif lacks:
        status.due = True
        status.reason = f"'{strategy}' needs data the cache lacks for {label}"
    else:
        status.reason = f"{label} is up to date for '{strategy}'"
    return status


def _running_session(manager: SyncSessionManager, version_id: int) -> str | None:
    for session in manager.get_active_sessions():
        if session.global_version_id == version_id:
            return session.session_id
    for other in manager.store.history.running_elsewhere():
        if other["global_version_id"] == version_id:
            return str(other["session_id"])
    return None


def _version_label(version_id: int, application: str | None) -> str:
    return f"version {version_id} ({application})" if application else f"version {version_id}"


def _plural(n: int, word: str) -> str:
    return f"{word}" if n == 1 else f"{n} {word}s"
