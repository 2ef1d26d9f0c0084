"""A soak kept cheap enough for CI: 10 syncs and 3 cancels in one process, then nothing is left
running, memory has not grown and every file descriptor is back."""

from __future__ import annotations

import asyncio
import gc
import os

import psutil

from d365sync_nb.connection import connect
from d365sync_nb.models import SyncStatus
from tests.support import apoll

SYNCS = 10
CANCELS = 3
RSS_GROWTH_LIMIT_MB = 10


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_ten_syncs_and_three_cancels_leave_nothing_behind(tmp_path):
    process = psutil.Process()

    managers = []

    async def one_round(index: int, *, cancel: bool) -> SyncStatus:
        conn = connect(demo=True, cache_dir=tmp_path / "cache", latency_ms=2 if cancel else 0)
        managers.append(conn.manager)
        try:
            result = await conn.manager.start(strategy="full", force=True)
            assert result.session_id is not None
            if cancel:
                session = conn.manager.get_sync_session(result.session_id)
                await apoll(lambda: session.phases["labels"].items_processed > 20)
                assert await conn.manager.cancel_sync_session(result.session_id)
            final = await conn.manager.wait(result.session_id)
            assert not conn.manager.get_active_sessions()
            return final.status
        finally:
            conn.close()

    for warm_up in range(4):  # imports, dataset caches, allocator arenas: RSS plateaus after
        await one_round(warm_up, cancel=warm_up == 3)
    gc.collect()
    await asyncio.sleep(0.2)  # let closed sockets and threads go before the baseline
    rss_start = process.memory_info().rss / 2**20
    fds_start = open_fds()
    threads_start = process.num_threads()

    statuses = []
    for index in range(SYNCS + CANCELS):
        statuses.append(await one_round(index, cancel=index % 4 == 3))
    gc.collect()
    await asyncio.sleep(0.2)
    rss_end = process.memory_info().rss / 2**20
    print(f"soak: RSS {rss_start:.1f} MB -> {rss_end:.1f} MB, fds {fds_start} -> {open_fds()}")

    assert statuses.count(SyncStatus.COMPLETED) == SYNCS
    assert statuses.count(SyncStatus.CANCELLED) == CANCELS
    assert rss_end - rss_start < RSS_GROWTH_LIMIT_MB
    assert open_fds() <= fds_start
    assert process.num_threads() <= threads_start
    from d365sync_nb.connection import registry

    assert all(m.closed for m in managers)  # every lease returned, every cache closed
    assert not set(map(id, managers)) & set(map(id, registry.managers()))
