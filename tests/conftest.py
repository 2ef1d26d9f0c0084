"""Shared fixtures: a real emulator over loopback and managers on real SQLite files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from d365sync_nb.config import resolve_settings
from d365sync_nb.emulator import Emulator
from d365sync_nb.sync.manager import SyncSessionManager

COUNT_KEYS = (
    "data_entities",
    "public_entities",
    "properties",
    "navigation_properties",
    "actions",
    "enumerations",
    "enumeration_members",
    "label_ids",
    "labels",
    "labels_missing",
    "labels_empty",
)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(scale="small")
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def make_manager(tmp_path: Path) -> Iterator[Callable[..., SyncSessionManager]]:
    """Build managers on the test's cache dir (closed at teardown)."""
    made: list[SyncSessionManager] = []

    def make(base_url: str, *, cache_dir: Path | None = None, **options: Any) -> SyncSessionManager:
        settings = resolve_settings(
            base_url=base_url,
            cache_dir=cache_dir or tmp_path / "cache",
            concurrency=options.pop("concurrency", 16),
        )
        options.setdefault("client_options", {"backoff_base": 0.02, "backoff_cap": 0.2})
        manager = SyncSessionManager(settings, **options)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.store.close()


def expected(emu: Emulator) -> dict[str, int]:
    counts = emu.dataset.expected_counts()
    return {k: counts[k] for k in COUNT_KEYS}


def visible_counts(manager: SyncSessionManager, version_id: int) -> dict[str, int]:
    """Counts of the build a reader sees now, recomputed from the tables."""
    version = manager.store.builds.get_version(version_id)
    assert version is not None and version["current_build_id"] is not None
    counts = manager.store.builds.counts(version["current_build_id"])
    return {k: counts[k] for k in COUNT_KEYS}


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll a condition until it holds (fails the test at the deadline)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


async def poll(call: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 20.0) -> Any:
    """Await ``call()`` until its answer satisfies ``until``; fail with the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await call()
        if until(answer):
            return answer
        assert time.monotonic() < deadline, f"condition not met in {timeout} s: {answer}"
        await asyncio.sleep(0.02)
