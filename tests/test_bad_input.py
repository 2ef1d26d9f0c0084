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
from tests.conftest import visible_counts


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
    ("mode", "words"), [("non_json", "expected JSON"), ("truncated", "invalid or truncated")]
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
    assert "expected JSON" in one_line(info.value)


async def test_an_html_answer_is_not_retried(emulator):
    from d365sync_nb.d365.client import D365MetadataClient

    emulator.configure(corrupt="non_json")
    async with D365MetadataClient(emulator.base_url) as client:
        with pytest.raises(D365ResponseError, match="is the base URL a D365"):
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
