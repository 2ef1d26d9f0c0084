"""Each bad input ends in one clear error; the last good cache stays intact."""

from __future__ import annotations

import uuid

import pytest

from d365sync_nb.config import resolve_settings, validate_base_url
from d365sync_nb.errors import (
    ConfigurationError,
    D365AuthError,
    D365ResponseError,
    SessionNotFoundError,
)
from d365sync_nb.models import SyncStatus, SyncStrategy
from tests.support import visible_counts


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text
    return text


async def test_unknown_strategy_lists_the_valid_ones(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    with pytest.raises(ConfigurationError) as info:
        await manager.start(strategy="fulll")
    text = one_line(info.value)
    assert "fulll" in text
    for strategy in SyncStrategy:
        assert strategy.value in text
    assert emulator.stats()["total_requests"] == 0  # rejected before any request


@pytest.mark.parametrize("session_id", ["nope", str(uuid.uuid4()), ""])
async def test_unknown_session_id(emulator, make_manager, session_id):
    manager = make_manager(emulator.base_url)
    with pytest.raises(SessionNotFoundError) as info:
        manager.get_sync_session(session_id)
    assert "No sync session" in one_line(info.value)
    with pytest.raises(SessionNotFoundError):
        await manager.cancel_sync_session(session_id)
    with pytest.raises(SessionNotFoundError):
        manager.add_progress_callback(session_id, print)


@pytest.mark.parametrize(
    "url",
    [
        "contoso.operations.dynamics.com",
        "ftp://contoso.operations.dynamics.com",
        "https://",
        "https://contoso.operations.dynamics.com/data/Customers",
        "https://user:hunter2@contoso.operations.dynamics.com",
        "http://contoso.operations.dynamics.com",
        "https://contoso.operations.dynamics.com:99999",
    ],
)
def test_malformed_url(url):
    with pytest.raises(ConfigurationError) as info:
        validate_base_url(url)
    text = one_line(info.value)
    assert "hunter2" not in text


def test_url_normalisation():
    assert validate_base_url(" https://X.operations.dynamics.com/ ") == (
        "https://x.operations.dynamics.com"
    )
    assert validate_base_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


def test_unknown_version_id_and_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("D365SYNC_PROFILES", str(tmp_path / "profiles.toml"))
    with pytest.raises(ConfigurationError, match="Unknown profile 'prod'"):
        resolve_settings(profile="prod")


async def test_unknown_global_version(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    with pytest.raises(ConfigurationError, match="Unknown global version 42"):
        await manager.start(global_version_id=42)
    with pytest.raises(ConfigurationError, match="integer"):
        await manager.start(global_version_id="latest")


async def _synced(emulator, manager):
    session = await manager.wait((await manager.start(strategy="full")).session_id)
    return session, visible_counts(manager, session.global_version_id)


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("non_json", "does not look like the D365 metadata service"),
        ("truncated", "invalid or truncated"),
    ],
)
async def test_garbled_bodies_fail_the_session_clearly(emulator, make_manager, mode, words):
    manager = make_manager(emulator.base_url)
    base, before = await _synced(emulator, manager)
    emulator.configure(corrupt=mode)
    session = await manager.wait(
        (await manager.start(strategy="full_without_labels", force=True)).session_id
    )
    assert session.status == SyncStatus.FAILED
    assert words in session.error and "/Metadata/DataEntities" in session.error
    assert "\n" not in session.error
    assert visible_counts(manager, base.global_version_id) == before


async def test_non_json_collection_is_one_clear_client_error(emulator):
    from d365sync_nb.d365.client import D365MetadataClient

    async with D365MetadataClient(emulator.base_url, max_attempts=1) as client:
        emulator.configure(corrupt="non_json")
        with pytest.raises(D365ResponseError) as info:
            await client.get_collection("PublicEnumerations")
    assert "an HTML page, not JSON: this does not look like the D365" in one_line(info.value)
    assert "<" not in one_line(info.value)  # the page itself is never echoed


async def test_an_html_answer_is_not_retried(emulator):
    from d365sync_nb.d365.client import D365MetadataClient

    emulator.configure(corrupt="non_json")
    async with D365MetadataClient(emulator.base_url) as client:
        with pytest.raises(D365ResponseError, match="check the base URL"):
            await client.get_collection("DataEntities")
    assert emulator.stats()["requests_by_endpoint"]["DataEntities"] == 1


async def test_401_without_credentials_is_one_clear_error(emulator, make_manager):
    emulator.configure(token="expected-token")
    manager = make_manager(emulator.base_url)
    with pytest.raises(D365AuthError) as info:
        await manager.start(strategy="full")
    text = one_line(info.value)
    assert "401 Unauthorized" in text and "Microsoft.Dynamics.DataEntities.Get" in text
    assert "expected-token" not in text
    assert manager.get_active_sessions() == []


def test_invalid_profile_values_never_echo_the_secret(tmp_path, monkeypatch):
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        '[profiles.bad]\nbase_url = "https://x.operations.dynamics.com"\n'
        "client_secret = 987654321\n"
        '[profiles.worse]\nbase_url = "https://x.operations.dynamics.com"\nconcurrency = "x"\n'
    )
    monkeypatch.setenv("D365SYNC_PROFILES", str(profiles))
    with pytest.raises(ConfigurationError) as info:
        resolve_settings(profile="bad")
    assert "client_secret" in one_line(info.value) and "987654321" not in str(info.value)
    with pytest.raises(ConfigurationError, match="concurrency must be an integer"):
        resolve_settings(profile="worse")


async def test_session_ids_are_normalised(emulator, make_manager):
    emulator.configure(latency_ms=20)
    manager = make_manager(emulator.base_url)
    sid = (await manager.start(strategy="full")).session_id
    shouted = f"  {sid.upper()} "
    assert manager.get_sync_session(shouted) is manager.get_sync_session(sid)
    assert await manager.cancel_sync_session(shouted) is True
    assert manager.get_sync_session(sid).status == SyncStatus.CANCELLED


async def test_cancel_right_after_start(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    sid = (await manager.start(strategy="full")).session_id
    assert await manager.cancel_sync_session(sid) is True
    assert manager.get_sync_session(sid).status == SyncStatus.CANCELLED
    assert manager.get_active_sessions() == []


async def test_a_stalled_service_ends_in_one_clear_failure(stalled_server, make_manager):
    import time

    from d365sync_nb.errors import D365TransportError

    manager = make_manager(
        stalled_server,
        client_options={"read_timeout": 0.3, "backoff_base": 0.02, "backoff_cap": 0.1},
    )
    started = time.monotonic()
    with pytest.raises(D365TransportError) as info:
        await manager.start(strategy="full")
    assert time.monotonic() - started < 10  # 3 stalls of 0.3 s, not 6 x 120 s
    text = one_line(info.value)
    assert "the service stopped answering: no data for 0.3 s, 3 times" in text
    assert manager.get_session_history() == []  # nothing recorded, nothing written


async def test_an_html_error_page_is_one_line_never_echoed(html_server, make_manager):
    from d365sync_nb.errors import D365HTTPError

    manager = make_manager(html_server)
    with pytest.raises(D365HTTPError) as info:
        await manager.start(strategy="full")
    text = one_line(info.value)
    assert text.startswith(f"POST {html_server}/data/") and "404 Not Found: " in text
    assert "an HTML page, not JSON: this does not look like the D365 metadata service" in text
    assert "<" not in text and "nginx" not in text


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"fault_rate": float("nan")}, "fault_rate must be a number from 0 to 1, not nan"),
        ({"fault_rate": 1.5}, "fault_rate must be a number from 0 to 1, not 1.5"),
        ({"latency_ms": -1.0}, "latency_ms must be a number from 0"),
        ({"latency_ms": float("inf")}, "latency_ms must be a number from 0"),
        ({"page_size": 0}, "page_size must be >= 1"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1"),
        ({"version": 3}, "unknown emulator release 3"),
        ({"port": 70000}, "port must be from 0 (any free port) to 65535, not 70000"),
    ],
)
def test_demo_emulator_options_are_one_clear_line(tmp_path, options, words):
    from d365sync_nb.connection import connect

    with pytest.raises(ConfigurationError) as info:
        connect(demo=True, cache_dir=tmp_path, emulator_options=options)
    text = one_line(info.value)
    assert text.startswith("The demo emulator cannot start: ") and words in text
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_busy_port_is_one_clear_line(emulator, tmp_path):
    from d365sync_nb.connection import connect

    port = int(emulator.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConfigurationError) as info:
        connect(demo=True, cache_dir=tmp_path, emulator_options={"port": port})
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in one_line(info.value)
