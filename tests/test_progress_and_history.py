"""Callbacks, weights, ETA, JSON, persistent history."""

from __future__ import annotations

import json
from datetime import datetime

from d365sync_nb.models import PhaseStatus, SyncPhase, SyncSession, SyncStatus


async def test_callbacks_sync_async_and_failing(emulator, make_manager):
    emulator.configure(latency_ms=2)
    manager = make_manager(emulator.base_url)
    seen: list[SyncSession] = []
    async_seen: list[float] = []
    everything: list[str] = []

    def broken(_: SyncSession) -> None:
        raise RuntimeError("a callback bug must not break the sync")

    async def on_async(snapshot: SyncSession) -> None:
        async_seen.append(snapshot.progress_percent)

    manager.add_listener(lambda s: everything.append(s.session_id))
    result = await manager.start(strategy="full")
    sid = result.session_id
    manager.add_progress_callback(sid, broken)
    manager.add_progress_callback(sid, seen.append)
    manager.add_progress_callback(sid, on_async)
    final = await manager.wait(sid)
    assert final.status == SyncStatus.COMPLETED
    assert seen and seen[-1].status == SyncStatus.COMPLETED
    assert seen[-1].progress_percent == 100.0
    assert async_seen
    assert set(everything) == {sid}
    # snapshots, not the live object: earlier ones keep their state
    assert any(s.status == SyncStatus.RUNNING for s in seen)
    # throttled: far fewer notifications than label requests
    labels = final.phases[SyncPhase.LABELS].items_total
    assert len(seen) < labels / 3
    # every phase transition was notified
    started = {s.current_phase for s in seen if s.current_phase}
    assert SyncPhase.LABELS in started and SyncPhase.INDEXING in started
    percents = [s.progress_percent for s in seen]
    assert percents == sorted(percents), "overall percent never goes backwards"


async def test_history_persists_and_reads_back(emulator, make_manager, tmp_path):
    manager = make_manager(emulator.base_url)
    first = await manager.wait((await manager.start(strategy="full_without_labels")).session_id)
    second = await manager.wait((await manager.start(strategy="full")).session_id)
    fresh = make_manager(emulator.base_url)
    history = fresh.get_session_history(limit=10)
    assert [s.session_id for s in history] == [second.session_id, first.session_id]
    again = fresh.get_sync_session(first.session_id)
    assert again.counts == first.counts
    assert again.phases[SyncPhase.LABELS].status == PhaseStatus.SKIPPED
    assert again.phases[SyncPhase.SCHEMAS].items_processed == (
        first.phases[SyncPhase.SCHEMAS].items_processed
    )
    assert again.started_at.tzinfo is not None
    assert fresh.get_session_history(limit=1, status="completed")[0].session_id == (
        second.session_id
    )
    data = json.loads(json.dumps(again.to_dict()))
    datetime.fromisoformat(data["started_at"])
    assert data["phases"]["labels"]["status"] == "skipped"
    assert data["progress_percent"] == 100.0
    assert data["estimated_remaining_seconds"] == 0.0


async def test_weights_are_learned_from_this_environments_history(emulator, make_manager):
    emulator.configure(latency_ms=1)
    manager = make_manager(emulator.base_url)
    first = await manager.wait((await manager.start(strategy="full")).session_id)
    second = await manager.wait((await manager.start(strategy="full", force=True)).session_id)
    secs = {p: first.phases[p].seconds for p in SyncPhase}
    learned = {p: second.phases[p].weight for p in SyncPhase}
    for phase in SyncPhase:
        assert abs(learned[phase] - max(secs[phase], 1e-3)) < 0.05 + secs[phase] * 0.01
    heaviest = max(learned, key=learned.get)
    assert heaviest == max(secs, key=secs.get)


def test_eta_and_percent_from_weights():
    session = SyncSession(session_id="x", environment="e", strategy="full", status="running")
    for phase in session.phases.values():
        phase.weight = 1.0
    session.phases[SyncPhase.LABELS].weight = 7.0  # 7 of 14 units
    for phase in list(SyncPhase)[:5]:
        session.phases[phase].status = PhaseStatus.COMPLETED
    labels = session.phases[SyncPhase.LABELS]
    labels.status, labels.items_total, labels.items_processed = PhaseStatus.RUNNING, 100, 50
    # done: 5 units + half of 7 = 8.5 of 14
    assert abs(session.progress_percent - 100 * 8.5 / 14) < 0.01
    assert session.estimated_remaining_seconds is not None
    session.phases[SyncPhase.INDEXING].status = PhaseStatus.SKIPPED
    assert abs(session.progress_percent - 100 * 8.5 / 13) < 0.01


async def test_wait_and_cancel_from_another_threads_loop(emulator, make_manager):
    import asyncio
    import threading

    emulator.configure(latency_ms=20)
    manager = make_manager(emulator.base_url)
    sid = (await manager.start(strategy="full")).session_id
    outcome: dict[str, object] = {}

    def other_thread() -> None:
        async def act() -> None:
            outcome["cancelled"] = await manager.cancel_sync_session(sid)
            outcome["final"] = (await manager.wait(sid)).status

        asyncio.run(act())

    thread = threading.Thread(target=other_thread)
    thread.start()
    final = await manager.wait(sid)  # this loop keeps running the session meanwhile
    await asyncio.to_thread(thread.join, 30)
    assert outcome == {"cancelled": True, "final": SyncStatus.CANCELLED}
    assert final.status == SyncStatus.CANCELLED


async def test_a_failed_save_is_logged_and_noted_never_swallowed(emulator, make_manager, caplog):
    """A progress snapshot the cache refuses is logged and noted on the session; a refused
    final record keeps the true outcome readable from memory."""
    import sqlite3

    manager = make_manager(emulator.base_url)
    real_save = manager.store.history.save
    calls = {"n": 0}

    def flaky_save(session: SyncSession) -> None:
        calls["n"] += 1
        if calls["n"] == 3 or session.status.is_final:
            raise sqlite3.OperationalError("disk I/O error")
        real_save(session)

    manager.store.history.save = flaky_save  # type: ignore[method-assign]
    result = await manager.start(strategy="full_without_labels")
    final = await manager.wait(result.session_id)
    assert final.status == SyncStatus.COMPLETED
    assert "progress snapshot(s) were not saved (Cannot write the cache file" in (
        final.message or ""
    )
    assert "disk I/O error; free some space)" in (final.message or "")
    assert "final state was not saved" in (final.message or "")
    assert "a progress snapshot was not saved" in caplog.text
    assert "its final state was not saved" in caplog.text
    again = manager.get_sync_session(result.session_id)
    assert again.status == SyncStatus.COMPLETED  # not the stale 'running' row
    assert manager.get_session_history(limit=1)[0].status == SyncStatus.COMPLETED


async def test_listeners_never_see_a_session_that_is_not_kept(emulator, make_manager):
    """An up-to-date answer starts no session: a listener (a dashboard) hears nothing of it;
    a started session is announced at once."""
    manager = make_manager(emulator.base_url)
    first = await manager.start(strategy="full_without_labels")
    await manager.wait(first.session_id)
    heard: list[SyncSession] = []
    manager.add_listener(heard.append)
    assert (await manager.start(strategy="full_without_labels")).up_to_date
    assert heard == []
    started = await manager.start(strategy="full_without_labels", force=True)
    assert heard and heard[0].session_id == started.session_id
    assert heard[0].phases[SyncPhase.VERSION_CHECK].status == PhaseStatus.COMPLETED
    for snapshot in heard:
        manager.get_sync_session(snapshot.session_id)  # every one it heard of is known
    await manager.wait(started.session_id)
