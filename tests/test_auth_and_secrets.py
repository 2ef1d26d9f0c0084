"""Entra ID seams tested with fakes of azure-identity's credential protocol (no network)."""

from __future__ import annotations

import logging
import time

import pytest
from azure.core.credentials import AccessToken

from d365sync_nb.config import resolve_settings
from d365sync_nb.d365.auth import make_credential
from d365sync_nb.models import SyncStatus
from d365sync_nb.sync.manager import SyncSessionManager

SECRET = "s3cr3t-value-that-must-never-leak"


class FakeCredential:
    """Hands out tokens from a list, like a credential whose token gets renewed."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.calls: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.calls.append(scopes)
        token = self.tokens[min(len(self.calls), len(self.tokens)) - 1]
        return AccessToken(token, int(time.time()) + 3600)


class AsyncFakeCredential(FakeCredential):
    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:  # type: ignore[override]
        return FakeCredential.get_token(self, *scopes, **kwargs)


@pytest.mark.parametrize("credential_type", [FakeCredential, AsyncFakeCredential])
async def test_token_sent_and_refreshed_once_on_401(emulator, tmp_path, credential_type):
    emulator.configure(token="token-1")
    credential = credential_type(["token-1", "token-2"])
    settings = resolve_settings(base_url=emulator.base_url, cache_dir=tmp_path)
    manager = SyncSessionManager(settings, credential=credential)
    version_id, _ = await manager.detect_version()
    assert version_id == 1
    assert credential.calls == [(f"{emulator.base_url}/.default",)]
    emulator.configure(token="token-2")  # the first token "expired"
    session = await manager.wait((await manager.start(strategy="full_without_labels")).session_id)
    assert session.status == SyncStatus.COMPLETED, session.error
    assert len(credential.calls) == 2  # refreshed once, shared by all requests in flight
    manager.store.close()


async def test_rejected_refresh_fails_with_one_clear_error(emulator, tmp_path):
    emulator.configure(token="the-right-one")
    credential = FakeCredential(["wrong-1", "wrong-2"])
    settings = resolve_settings(base_url=emulator.base_url, cache_dir=tmp_path)
    manager = SyncSessionManager(settings, credential=credential)
    from d365sync_nb.errors import D365AuthError

    with pytest.raises(D365AuthError) as info:
        await manager.start(strategy="full")
    text = str(info.value)
    assert "401" in text and "D365FO_CLIENT_ID" in text
    assert "wrong-" not in text and "the-right-one" not in text
    manager.store.close()


def test_credential_choice(monkeypatch, tmp_path):
    for var in ("D365FO_CLIENT_ID", "D365FO_TENANT_ID", "D365FO_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    loopback = resolve_settings(base_url="http://127.0.0.1:1")
    assert make_credential(loopback) is None
    monkeypatch.setenv("D365FO_CLIENT_ID", "app")
    monkeypatch.setenv("D365FO_TENANT_ID", "tenant")
    monkeypatch.setenv("D365FO_CLIENT_SECRET", SECRET)
    remote = resolve_settings(base_url="https://contoso.operations.dynamics.com")
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    assert isinstance(make_credential(remote), ClientSecretCredential)
    monkeypatch.delenv("D365FO_CLIENT_SECRET")
    default = resolve_settings(base_url="https://contoso.operations.dynamics.com")
    assert isinstance(make_credential(default), DefaultAzureCredential)


async def test_secret_never_leaks(monkeypatch, tmp_path, caplog, emulator):
    monkeypatch.setenv("D365FO_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("D365FO_CLIENT_ID", "app")
    monkeypatch.setenv("D365FO_TENANT_ID", "tenant")
    caplog.set_level(logging.DEBUG)
    settings = resolve_settings(base_url=emulator.base_url, cache_dir=tmp_path)
    assert settings.client_secret is not None
    emulator.configure(token="tok")
    manager = SyncSessionManager(settings)  # loopback: no token, so a 401 follows
    texts = [repr(settings), str(settings), settings.model_dump_json(), repr(manager)]
    try:
        await manager.start(strategy="full")
    except Exception as exc:
        texts.append(str(exc))
    texts.append(caplog.text)
    texts += [s.model_dump_json() for s in manager.get_session_history(limit=10)]
    assert not any(SECRET in t for t in texts)
    manager.store.close()


class SlowCredential(FakeCredential):
    """A sync credential that takes a while (as a real token request does)."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        time.sleep(0.2)
        return super().get_token(*scopes, **kwargs)


def test_token_refresh_is_shared_across_event_loops():
    """Two loops on two threads ask at once: one credential call, both get the token; a forced
    refresh from a third loop works too (an asyncio.Lock bound to the first loop would not)."""
    import asyncio
    import threading

    from d365sync_nb.d365.auth import TokenProvider

    credential = SlowCredential(["token-1", "token-2"])
    provider = TokenProvider(credential, "https://contoso.operations.dynamics.com")
    got: list[str] = []
    start = threading.Barrier(2)

    def on_own_loop() -> None:
        start.wait()
        got.append(asyncio.run(provider.token()))

    threads = [threading.Thread(target=on_own_loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert got == ["token-1", "token-1"]
    assert len(credential.calls) == 1
    refreshed = asyncio.run(provider.token(force_refresh=True, stale="token-1"))
    assert refreshed == "token-2" and len(credential.calls) == 2
    # a 401 on a token another request already replaced does not refresh again
    assert asyncio.run(provider.token(force_refresh=True, stale="token-1")) == "token-2"
    assert len(credential.calls) == 2


def test_malformed_url_never_echoes_its_password():
    from d365sync_nb.errors import ConfigurationError

    for url in (f"https://user:{SECRET}@contoso.com:99999", f"ftp://user:{SECRET}@contoso.com"):
        with pytest.raises(ConfigurationError) as info:
            resolve_settings(base_url=url)
        assert SECRET not in str(info.value) and "***" in str(info.value)
