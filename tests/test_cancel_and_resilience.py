"""Cancellation, faults, throttling and a killed process: nothing half-written becomes visible."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from d365sync_nb.errors import D365Error, SessionConflictError
from d365sync_nb.models import PhaseStatus, SyncPhase, SyncStatus
from d365sync_nb.store import store_path
from tests.support import apoll, expected, visible_counts


async def test_cancel_during_labels_stops_requests_and_keeps_previous_version(
    emulator, make_manager
):
    manager = make_manager(emulator.base_url)
    base = await manager.wait((await manager.start(strategy="full_without_labels")).session_id)
    before = visible_counts(manager, base.global_version_id)
    emulator.configure(latency_ms=20)
    result = await manager.start(strategy="full", force=True)
    sid = result.session_id
    session = manager.get_sync_session(sid)
    await apoll(lambda: session.phases[SyncPhase.LABELS].items_processed >= 50)
    assert await manager.cancel_sync_session(sid) is True
    returned_at = time.time()
    await asyncio.sleep(1.0)  # observe the silence after cancel returned
    late = [t for t, endpoint in emulator.request_log() if t > returned_at + 0.5]
    assert late == [], f"{len(late)} requests started after cancel returned"
    final = manager.get_sync_session(sid)
    assert final.status == SyncStatus.CANCELLED
    assert final.phases[SyncPhase.LABELS].status == PhaseStatus.CANCELLED
    assert final.error is None
    assert manager.get_active_sessions() == []
    assert visible_counts(manager, base.global_version_id) == before
    version = manager.store.versions.get_version(base.global_version_id)
    assert not version["has_labels"]
    builds = manager.store.db.rows("SELECT id FROM builds")
    assert [b["id"] for b in builds] == [version["current_build_id"]]
    # history, read back from SQLite by a fresh manager
    again = make_manager(emulator.base_url).get_sync_session(sid)
    assert again.status == SyncStatus.CANCELLED


async def test_cancel_of_a_finished_session_returns_false(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    sid = (await manager.start(strategy="entities_only")).session_id
    await manager.wait(sid)
    assert await manager.cancel_sync_session(sid) is False


async def test_five_percent_faults_still_give_exact_counts(emulator, make_manager):
    emulator.configure(fault_rate=0.05)
    manager = make_manager(emulator.base_url)
    sid = (await manager.start(strategy="full")).session_id
    session = await manager.wait(sid)
    assert session.status == SyncStatus.COMPLETED, session.error
    assert visible_counts(manager, session.global_version_id) == expected(emulator)
    statuses = emulator.stats()["responses_by_status"]
    assert statuses.get("503", 0) > 0 and statuses.get("dropped", 0) > 0


async def test_429_storm_still_gives_exact_counts(emulator, make_manager):
    emulator.configure(max_concurrency=3, retry_after=0.05, latency_ms=5)
    manager = make_manager(emulator.base_url, concurrency=16)
    sid = (await manager.start(strategy="full")).session_id
    session = await manager.wait(sid)
    assert session.status == SyncStatus.COMPLETED, session.error
    assert visible_counts(manager, session.global_version_id) == expected(emulator)
    assert emulator.stats()["responses_by_status"].get("429", 0) > 0


async def test_persistent_503_fails_clearly_and_keeps_previous_version(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    base = await manager.wait((await manager.start(strategy="full")).session_id)
    before = visible_counts(manager, base.global_version_id)
    emulator.configure(fault_rate=1.0)
    # detection itself fails: one clear error, nothing started
    with pytest.raises(D365Error) as info:
        await manager.start(strategy="full", force=True)
    message = str(info.value)
    assert "Microsoft.Dynamics.DataEntities.Get" in message  # names the URL
    assert "503" in message or "no answer after 6 attempts" in message
    assert "\n" not in message
    assert manager.get_active_sessions() == []
    assert visible_counts(manager, base.global_version_id) == before


def cli_sync(base_url: str, cache, *extra: str) -> subprocess.Popen[bytes]:
    """A full sync by the CLI in another process (output discarded)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "d365sync_nb",
            "sync",
            "--base-url",
            base_url,
            "--cache-dir",
            str(cache),
            "--strategy",
            "full",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _sessions(db_path):
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT session_id, status FROM sessions").fetchall()
    finally:
        conn.close()


def _labels_running(db_path) -> bool:
    if not db_path.exists():
        return False
    conn = sqlite3.connect(db_path)
    try:
        row = conn.execute(
            "SELECT count(*) FROM session_phases p JOIN sessions s USING(session_id)"
            " WHERE s.status = 'running' AND p.phase = 'labels' AND p.status = 'running'"
        ).fetchone()
        return bool(row[0])
    except sqlite3.Error:
        return False
    finally:
        conn.close()


async def test_killed_process_leaves_previous_version_and_marks_session_interrupted(
    emulator, make_manager, tmp_path
):
    cache = tmp_path / "cache"
    manager = make_manager(emulator.base_url, cache_dir=cache)
    base = await manager.wait((await manager.start(strategy="full_without_labels")).session_id)
    before = visible_counts(manager, base.global_version_id)
    manager.store.close()
    emulator.configure(latency_ms=30)
    db = store_path(cache, manager.settings.environment_name)
    proc = cli_sync(emulator.base_url, cache, "--force")
    try:
        await apoll(lambda: _labels_running(db), timeout=60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = [sid for sid, status in _sessions(db) if status == "running"]
    assert len(killed) == 1
    fresh = make_manager(emulator.base_url, cache_dir=cache)
    assert fresh.interrupted_sessions == killed
    session = fresh.get_sync_session(killed[0])
    assert session.status == SyncStatus.FAILED
    assert "interrupted" in session.error
    assert visible_counts(fresh, base.global_version_id) == before
    version = fresh.store.versions.get_version(base.global_version_id)
    builds = fresh.store.db.rows("SELECT id FROM builds")
    assert [b["id"] for b in builds] == [version["current_build_id"]]


async def test_a_live_process_session_is_left_alone(emulator, make_manager, tmp_path):
    cache = tmp_path / "cache"
    emulator.configure(latency_ms=30)
    probe = make_manager(emulator.base_url, cache_dir=cache)
    db = store_path(cache, probe.settings.environment_name)
    probe.store.close()
    proc = cli_sync(emulator.base_url, cache)
    try:
        await apoll(lambda: _labels_running(db), timeout=60)
        other = make_manager(emulator.base_url, cache_dir=cache)
        assert other.interrupted_sessions == []
        with pytest.raises(SessionConflictError, match=f"pid {proc.pid}"):
            await other.start(strategy="full", force=True)
        assert _labels_running(db)
    finally:
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    assert [status for _, status in _sessions(db)] == ["cancelled"]


async def test_a_second_cancel_during_the_clean_up_still_settles_the_session(
    emulator, make_manager
):
    """Two cancels (a double click, two assistants): the clean-up is not cut short and the
    recorded session is cancelled with no phase left running."""
    import time as clock

    emulator.configure(latency_ms=20)
    manager = make_manager(emulator.base_url)
    real_discard = manager.store.builds.discard

    def slow_discard(build_id: int) -> None:
        clock.sleep(0.3)
        real_discard(build_id)

    manager.store.builds.discard = slow_discard  # type: ignore[method-assign]
    result = await manager.start(strategy="full")
    session = manager.get_sync_session(result.session_id)
    await apoll(lambda: session.phases[SyncPhase.LABELS].items_processed > 10)
    first, second = await asyncio.gather(
        manager.cancel_sync_session(result.session_id),
        manager.cancel_sync_session(result.session_id),
    )
    assert first is True and second in (True, False)
    stored = manager.store.history.get(result.session_id)
    for final in (manager.get_sync_session(result.session_id), stored):
        assert final is not None and final.status == SyncStatus.CANCELLED
        assert not any(p.status == PhaseStatus.RUNNING for p in final.phases.values())
        assert final.phases[SyncPhase.LABELS].status == PhaseStatus.CANCELLED


async def test_a_cancel_before_the_task_ran_closes_everything(emulator, make_manager, caplog):
    import gc

    manager = make_manager(emulator.base_url)
    result = await manager.start(strategy="full")
    assert await manager.cancel_sync_session(result.session_id)  # no await in between
    final = manager.get_sync_session(result.session_id)
    assert final.status == SyncStatus.CANCELLED
    assert final.phases[SyncPhase.VERSION_CHECK].status == PhaseStatus.COMPLETED
    log = manager.get_request_log(result.session_id)  # the version check's 3 requests
    assert [row["endpoint"] for row in log] == [
        "GetInstalledModules", "GetApplicationVersion", "GetPlatformBuildVersion"
    ] or sorted(row["endpoint"] for row in log) == sorted([
        "GetInstalledModules", "GetApplicationVersion", "GetPlatformBuildVersion"
    ])  # fmt: skip
    assert not manager.get_active_sessions()
    gc.collect()
    assert "Unclosed" not in caplog.text
