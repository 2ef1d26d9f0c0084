"""The one connection lifecycle: leases on shared managers, conflicts, defaults, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from d365sync_nb import tools
from d365sync_nb.connection import connect, registry
from d365sync_nb.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _no_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D365SYNC_PROFILES", str(tmp_path / "no-profiles.toml"))
    for var in ("D365FO_BASE_URL", "D365FO_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)


def test_connections_share_one_manager_and_the_last_close_closes_it(emulator, tmp_path):
    first = connect(base_url=emulator.base_url, cache_dir=tmp_path)
    second = connect(base_url=emulator.base_url, cache_dir=tmp_path)
    assert first is not second and first.manager is second.manager
    manager = first.manager
    first.close()
    first.close()  # idempotent: one lease returned, not two
    assert not manager.closed
    assert manager.store.history.count() == 0  # still usable by the second connection
    second.close()
    assert manager.closed
    third = connect(base_url=emulator.base_url, cache_dir=tmp_path)
    try:
        assert third.manager is not manager and not third.manager.closed
    finally:
        third.close()


def test_conflicting_options_are_an_error_never_dropped(emulator, tmp_path):
    conn = connect(base_url=emulator.base_url, cache_dir=tmp_path, concurrency=4)
    try:
        with pytest.raises(ConfigurationError, match="concurrency"):
            connect(base_url=emulator.base_url, cache_dir=tmp_path, concurrency=8)
        with pytest.raises(ConfigurationError, match="client_options"):
            connect(
                base_url=emulator.base_url,
                cache_dir=tmp_path,
                concurrency=4,
                client_options={"max_attempts": 2},
            )
        same = connect(base_url=emulator.base_url, cache_dir=tmp_path, concurrency=4)
        assert same.manager is conn.manager
        same.close()
    finally:
        conn.close()


async def test_closing_while_a_session_runs_waits_for_it(emulator, tmp_path):
    emulator.configure(latency_ms=20)
    conn = connect(base_url=emulator.base_url, cache_dir=tmp_path)
    manager = conn.manager
    first = await manager.start(strategy="full_without_labels")
    conn.close()
    assert not manager.closed  # its session still writes to the cache
    again = connect(base_url=emulator.base_url, cache_dir=tmp_path)
    assert again.manager is manager  # never a second manager on the same cache file
    await manager.wait(first.session_id)
    assert not manager.closed  # the new lease keeps it open
    second = await manager.start(strategy="full_without_labels", force=True)
    again.close()
    final = await manager.wait(second.session_id)
    assert final.status == "completed", final.error
    assert manager.closed  # the last lease went while it ran: closed when it ended
    with pytest.raises(ConfigurationError, match="closed"):
        await manager.start(strategy="full")


def test_a_closed_default_connection_is_forgotten(emulator, tmp_path):
    conn = connect(base_url=emulator.base_url, cache_dir=tmp_path)
    registry.set_default(conn)
    assert registry.connection() is conn
    conn.close()
    assert registry.default is None


async def test_redaction_fails_closed_when_the_profiles_file_is_unreadable(tmp_path, monkeypatch):
    broken = tmp_path / "profiles.toml"
    broken.write_text("[profiles.prod\nclient_secret = 'never-shown-1234'\n")
    monkeypatch.setenv("D365SYNC_PROFILES", str(broken))
    answer = await tools.d365fo_list_sync_sessions(profile="prod")
    assert answer["success"] is False
    assert "withheld" in answer["error"] and "never-shown-1234" not in str(answer)


def test_one_cache_file_is_never_written_by_two_managers(emulator, tmp_path):
    """Two demo emulators (two URLs) would share the demo's cache file: the second is refused
    while the first is open, and welcome once it is closed."""
    first = connect(demo=True, cache_dir=tmp_path)
    try:
        with pytest.raises(ConfigurationError, match=r"already in use.*base_url"):
            connect(demo=True, cache_dir=tmp_path)
    finally:
        first.close()
    second = connect(demo=True, cache_dir=tmp_path)
    try:
        assert second.manager.store.path == first.manager.store.path
        assert second.manager is not first.manager
    finally:
        second.close()
