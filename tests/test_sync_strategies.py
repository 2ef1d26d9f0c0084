"""End to end: every strategy against the emulator over loopback, real SQLite."""

from __future__ import annotations

import pytest

from d365sync_nb.errors import ConfigurationError, SessionConflictError
from d365sync_nb.models import PhaseStatus, SyncPhase, SyncStatus
from tests.support import apoll, expected, visible_counts


async def run(manager, strategy="full", **kw):
    result = await manager.start(strategy=strategy, **kw)
    assert result.session_id is not None, result.message
    return await manager.wait(result.session_id)


async def test_full_sync_counts_equal_dataset(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    session = await run(manager, "full")
    assert session.status == SyncStatus.COMPLETED, session.error
    want = expected(emulator)
    assert {k: session.counts[k] for k in want} == want
    assert visible_counts(manager, session.global_version_id) == want
    assert all(p.status == PhaseStatus.COMPLETED for p in session.phases.values())
    labels = session.phases[SyncPhase.LABELS]
    assert labels.items_processed == labels.items_total == want["label_ids"]
    assert session.progress_percent == 100.0
    # honest items: the version check counts its 3 requests, phases without items show none
    check = session.phases[SyncPhase.VERSION_CHECK]
    assert (check.items_processed, check.items_total) == (3, 3)
    assert f"version {session.global_version_id}: " in check.note and "modules" in check.note
    for phase in (SyncPhase.INITIALIZING, SyncPhase.FINALIZING):
        assert session.phases[phase].items_total is None, phase
    assert session.phases[SyncPhase.INDEXING].items_processed > 0
    assert session.started_at <= session.phases[SyncPhase.INITIALIZING].started_at
    assert check.started_at <= session.phases[SyncPhase.ENTITIES].started_at
    # every field of a data entity made it into the cache
    name = emulator.dataset.data_entities[0]["Name"]
    row = manager.store.db.rows("SELECT * FROM data_entities WHERE name = ?", (name,))[0]
    src = emulator.dataset.data_entities[0]
    assert row["public_entity_name"] == src["PublicEntityName"]
    assert row["entity_category"] == src["EntityCategory"]
    assert bool(row["data_management_enabled"]) == src["DataManagementEnabled"]


async def test_search_index_is_built_from_synced_metadata(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    await run(manager, "full")
    ds = emulator.dataset
    entity = next(e for e in ds.public_entities if e["LabelId"] and ds.labels.get(e["LabelId"]))
    hits = manager.search(entity["Name"], limit=50)
    hit = next(h for h in hits if h["kind"] == "public_entity" and h["name"] == entity["Name"])
    assert hit["label"] == ds.labels[entity["LabelId"]]
    # a word found only in a label text finds the row by its label
    names = " ".join(e["Name"] for e in ds.public_entities).lower()
    text = next(v for v in ds.labels.values() if v and v.split()[0].lower() not in names)
    hits = manager.search(text.split()[0], limit=5)
    assert hits and all(text.split()[0].lower() in (h["label"] or "").lower() for h in hits)


async def test_full_without_labels_skips_labels(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    session = await run(manager, "full_without_labels")
    assert session.status == SyncStatus.COMPLETED
    assert session.phases[SyncPhase.LABELS].status == PhaseStatus.SKIPPED
    assert emulator.stats()["requests_by_endpoint"].get("Labels", 0) == 0
    assert session.counts["public_entities"] == expected(emulator)["public_entities"]
    version = manager.store.versions.get_version(session.global_version_id)
    assert version["has_metadata"] and not version["has_labels"]


async def test_entities_only_keeps_cached_schemas(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    first = await run(manager, "entities_only")
    assert first.phases[SyncPhase.SCHEMAS].status == PhaseStatus.SKIPPED
    assert first.counts["data_entities"] == expected(emulator)["data_entities"]
    assert first.counts["public_entities"] == 0
    version = manager.store.versions.get_version(first.global_version_id)
    assert not version["has_metadata"]  # schemas are missing: not up to date for full syncs
    assert (await manager.start(strategy="full_without_labels")).session_id is not None
    await manager.wait(manager.latest_session_id())
    emulator.reset_stats()
    again = await run(manager, "entities_only", force=True)
    by_endpoint = emulator.stats()["requests_by_endpoint"]
    assert by_endpoint.get("PublicEntities", 0) == 0
    assert by_endpoint.get("DataEntities", 0) >= 1
    assert again.counts["public_entities"] == expected(emulator)["public_entities"]


async def test_labels_only_needs_metadata_then_fetches_labels(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    with pytest.raises(ConfigurationError, match="full_without_labels"):
        await manager.start(strategy="labels_only")
    await run(manager, "full_without_labels")
    emulator.reset_stats()
    session = await run(manager, "labels_only")
    by_endpoint = emulator.stats()["requests_by_endpoint"]
    assert by_endpoint.get("PublicEntities", 0) == 0
    assert by_endpoint["Labels"] == expected(emulator)["label_ids"]
    assert session.counts["labels"] == expected(emulator)["labels"]
    build = manager.store.history.load(limit=2)[1]  # the full_without_labels session
    assert build.status == SyncStatus.COMPLETED
    for phase in (SyncPhase.ENTITIES, SyncPhase.SCHEMAS, SyncPhase.ENUMERATIONS):
        reused = session.phases[phase]
        assert reused.status == PhaseStatus.REUSED, phase  # copied from the cache, not fetched
        assert reused.note.startswith("reused ") and " from build " in reused.note
        assert reused.items_processed == 0
    assert session.phases[SyncPhase.LABELS].status == PhaseStatus.COMPLETED
    # learned weights come from phases that did work, never from reused ones
    learned = manager.store.history.phase_seconds("labels_only")
    assert "labels" in learned and "entities" not in learned and "schemas" not in learned


async def test_incremental_fetches_only_missing_labels_for_a_new_version(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    v1 = await run(manager, "full")
    v1_ids = emulator.dataset.label_ids_referenced()
    emulator.configure(version=2)
    emulator.reset_stats()
    v2 = await run(manager, "incremental")
    assert v2.status == SyncStatus.COMPLETED, v2.error
    assert v2.global_version_id != v1.global_version_id
    new_ids = emulator.dataset.label_ids_referenced() - v1_ids
    assert 0 < len(new_ids) < len(v1_ids)
    assert emulator.stats()["requests_by_endpoint"]["Labels"] == len(new_ids)
    assert visible_counts(manager, v2.global_version_id) == expected(emulator)
    # the first version is still there, untouched
    assert (
        visible_counts(manager, v1.global_version_id)["data_entities"] == v1.counts["data_entities"]
    )


async def test_forced_incremental_with_everything_cached_reuses_every_phase(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    await run(manager, "full")
    emulator.reset_stats()
    session = await run(manager, "incremental", force=True)
    assert session.status == SyncStatus.COMPLETED, session.error
    assert emulator.stats()["total_requests"] == 3 == session.http.requests  # the version check
    for phase in (SyncPhase.ENTITIES, SyncPhase.SCHEMAS, SyncPhase.ENUMERATIONS):
        assert session.phases[phase].status == PhaseStatus.REUSED, phase
    labels = session.phases[SyncPhase.LABELS]
    assert labels.status == PhaseStatus.REUSED
    assert labels.note == f"all {expected(emulator)['label_ids']:,} labels reused from the cache"
    assert visible_counts(manager, session.global_version_id) == expected(emulator)


async def test_incremental_on_an_up_to_date_version_is_a_clear_answer(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    await run(manager, "full")
    emulator.reset_stats()
    result = await manager.start(strategy="incremental")
    assert result.session_id is None and result.up_to_date
    assert "already up to date" in result.message
    assert emulator.stats()["requests_by_endpoint"].get("Labels", 0) == 0


async def test_up_to_date_then_force(emulator, make_manager, caplog):
    import gc

    manager = make_manager(emulator.base_url)
    await run(manager, "full")
    assert await manager.start_sync_session(strategy="full") is None
    gc.collect()  # the version check's client was closed, not left to the collector
    assert "Unclosed" not in caplog.text
    forced = await run(manager, "full", force=True)
    assert forced.status == SyncStatus.COMPLETED


async def test_sharing_mode_copies_from_an_environment_with_identical_modules(
    emulator, make_manager, tmp_path
):
    from d365sync_nb.emulator import Emulator

    source = make_manager(emulator.base_url)
    await run(source, "full")
    with Emulator(scale="small") as other_url:
        target = make_manager(other_url)
        session = await run(target, "sharing_mode")
        assert session.status == SyncStatus.COMPLETED, session.error
        assert "identical modules" in (session.message or "")
        assert visible_counts(target, session.global_version_id) == expected(emulator)


async def test_sharing_mode_makes_no_metadata_requests(make_manager, tmp_path):
    from d365sync_nb.emulator import Emulator

    a_emu, b_emu = Emulator(scale="small"), Emulator(scale="small")
    with a_emu as a_url, b_emu as b_url:
        await run(make_manager(a_url), "full")
        b = make_manager(b_url)
        session = await run(b, "sharing_mode")
        assert session.http.requests == 3  # the version check only
        for phase in (SyncPhase.ENTITIES, SyncPhase.SCHEMAS, SyncPhase.ENUMERATIONS):
            shared = session.phases[phase]
            assert shared.status == PhaseStatus.REUSED, phase
            assert "from the cache of" in shared.note and shared.note.startswith("copied ")
        labels = session.phases[SyncPhase.LABELS]
        assert labels.status == PhaseStatus.REUSED
        assert labels.note.startswith(f"copied {expected(b_emu)['label_ids']:,} labels")
        by_endpoint = b_emu.stats()["requests_by_endpoint"]
        assert by_endpoint.get("GetInstalledModules") == 1  # the version check only
        for endpoint in ("DataEntities", "PublicEntities", "PublicEnumerations", "Labels"):
            assert by_endpoint.get(endpoint, 0) == 0, endpoint
        assert session.counts["labels"] == expected(b_emu)["labels"]


async def test_sharing_mode_falls_back_to_full_sync(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    session = await run(manager, "sharing_mode")
    assert session.status == SyncStatus.COMPLETED
    assert "full sync instead" in (session.message or "")
    assert visible_counts(manager, session.global_version_id) == expected(emulator)


async def test_one_running_session_per_version(emulator, make_manager):
    emulator.configure(latency_ms=20)
    manager = make_manager(emulator.base_url)
    first = await manager.start(strategy="full")
    with pytest.raises(SessionConflictError, match=first.session_id):
        await manager.start(strategy="full", force=True)
    assert await manager.cancel_sync_session(first.session_id)


async def test_server_driven_paging_is_followed(emulator, make_manager):
    emulator.configure(page_size=7)
    manager = make_manager(emulator.base_url)
    session = await run(manager, "full_without_labels")
    want = expected(emulator)
    for key in ("data_entities", "public_entities", "enumerations", "properties"):
        assert session.counts[key] == want[key], key


async def test_two_concurrent_starts_give_one_session(emulator, make_manager):
    import asyncio

    emulator.configure(latency_ms=5)
    manager = make_manager(emulator.base_url)
    results = await asyncio.gather(
        manager.start(strategy="full"), manager.start(strategy="full"), return_exceptions=True
    )
    started = [r for r in results if not isinstance(r, Exception)]
    assert len(started) == 1
    assert [type(r) for r in results if isinstance(r, Exception)] == [SessionConflictError]
    await manager.wait(started[0].session_id)


async def test_incremental_completes_what_entities_only_left_out(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    await run(manager, "entities_only")
    session = await run(manager, "incremental")
    assert visible_counts(manager, session.global_version_id) == expected(emulator)
    assert (await manager.start(strategy="incremental")).up_to_date


async def test_sharing_mode_ignores_an_incomplete_cache(make_manager):
    from d365sync_nb.emulator import Emulator

    with Emulator(scale="small") as a_url, Emulator(scale="small") as b_url:
        await run(make_manager(a_url), "entities_only")
        b = make_manager(b_url)
        session = await run(b, "sharing_mode")
        assert "full sync instead" in (session.message or "")
        assert session.counts["public_entities"] > 0


async def test_a_second_manager_in_this_process_leaves_a_running_session_alone(
    emulator, make_manager, tmp_path
):
    emulator.configure(latency_ms=10)
    first = make_manager(emulator.base_url, cache_dir=tmp_path / "shared")
    sid = (await first.start(strategy="full")).session_id
    session = first.get_sync_session(sid)
    await apoll(lambda: session.phases[SyncPhase.LABELS].items_processed > 10)
    second = make_manager(emulator.base_url, cache_dir=tmp_path / "shared")
    assert second.interrupted_sessions == []
    final = await first.wait(sid)
    assert final.status == SyncStatus.COMPLETED, final.error
    assert visible_counts(first, final.global_version_id) == expected(emulator)


async def test_cancel_at_finalize_leaves_a_consistent_cache(emulator, make_manager):
    import asyncio

    manager = make_manager(emulator.base_url)
    base = await run(manager, "full_without_labels")
    before = visible_counts(manager, base.global_version_id)
    sid = (await manager.start(strategy="full", force=True)).session_id
    cancels: list[asyncio.Task[bool]] = []

    def on_progress(snapshot) -> None:
        if snapshot.current_phase == SyncPhase.FINALIZING and not cancels:
            cancels.append(asyncio.ensure_future(manager.cancel_sync_session(sid)))

    manager.add_progress_callback(sid, on_progress)
    final = await manager.wait(sid)
    assert cancels
    await cancels[0]
    visible = visible_counts(manager, base.global_version_id)
    version = manager.store.versions.get_version(base.global_version_id)
    if final.status == SyncStatus.COMPLETED:  # the cancel came after the commit
        assert visible == expected(emulator) and version["has_labels"]
    else:
        assert final.status == SyncStatus.CANCELLED
        assert visible == before and not version["has_labels"]
    assert manager.get_active_sessions() == []


async def test_sharing_mode_never_copies_from_a_damaged_cache(emulator, make_manager, tmp_path):
    manager = make_manager(emulator.base_url)
    (tmp_path / "cache").mkdir(exist_ok=True)
    damaged = tmp_path / "cache" / "other-env.sqlite3"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192)
    session = await run(manager, "sharing_mode")
    assert session.status == SyncStatus.COMPLETED, session.error
    assert "full sync instead" in (session.message or "")
