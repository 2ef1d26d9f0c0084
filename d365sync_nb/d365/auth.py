"""Bearer tokens from azure-identity credentials (sync or async), cached until near expiry."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from concurrent.futures import Future
from typing import Any, Protocol

from d365sync_nb.config import ConnectionSettings
from d365sync_nb.errors import D365AuthError


class TokenCredential(Protocol):
    """azure-identity's credential protocol (``azure.core.credentials.TokenCredential``)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


def make_credential(settings: ConnectionSettings) -> TokenCredential | None:
    """No token for a loopback emulator; client secret when configured; else the default chain."""
    if settings.is_loopback:
        return None
    if settings.client_id and settings.tenant_id and settings.client_secret:
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(
            tenant_id=settings.tenant_id,
            client_id=settings.client_id,
            client_secret=settings.client_secret.get_secret_value(),
        )
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


class TokenProvider:
    """Caches one token for ``<base_url>/.default``; refreshes it near expiry or on demand.

    Safe across event loops and threads (sessions may be started and waited on from different
    loops): one refresh runs at a time, and callers on any loop wait for its result.
    """

    def __init__(self, credential: TokenCredential, base_url: str, *, margin: float = 120) -> None:
        self._credential = credential
        self.scope = f"{base_url.rstrip('/')}/.default"
        self._margin = margin
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = threading.Lock()  # guards the fields; never held across an await
        self._refresh: Future[str] | None = None  # the refresh under way, if any

    def __repr__(self) -> str:
        return f"TokenProvider(scope={self.scope!r}, cached={self._token is not None})"

    async def token(self, *, force_refresh: bool = False, stale: str | None = None) -> str:
        """A valid token. ``stale``: the token a 401 rejected (refresh only if still current)."""
        while True:
            with self._lock:
                current = self._token
                if force_refresh:  # refresh, unless another request already replaced `stale`
                    fresh = current is not None and stale is not None and current != stale
                else:
                    fresh = current is not None and time.time() < self._expires_on - self._margin
                if fresh and current is not None:
                    return current
                pending = self._refresh
                if pending is None:
                    pending = self._refresh = Future()
                    owner = True
                else:
                    owner = False
            if not owner:
                try:
                    return await asyncio.wrap_future(pending)
                except _RefreshAbandoned:
                    continue  # its owner was cancelled: try again
            try:
                token, expires_on = await self._fetch()
            except BaseException as exc:
                with self._lock:
                    self._refresh = None
                pending.set_exception(
                    exc if isinstance(exc, D365AuthError) else _RefreshAbandoned()
                )
                raise
            with self._lock:
                self._token, self._expires_on, self._refresh = token, expires_on, None
            pending.set_result(token)
            return token

    async def _fetch(self) -> tuple[str, float]:
        try:
            if inspect.iscoroutinefunction(self._credential.get_token):
                access = await self._credential.get_token(self.scope)
            else:  # a sync credential may block on I/O: keep the loop free
                access = await asyncio.to_thread(self._credential.get_token, self.scope)
        except Exception as exc:  # azure-identity's errors are many lines long
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise D365AuthError(
                f"could not get a token for {self.scope} ({type(exc).__name__}: {first}); "
                "set D365FO_CLIENT_ID/D365FO_TENANT_ID/D365FO_CLIENT_SECRET or run `az login`",
                status=401,
            ) from None
        return str(access.token), float(getattr(access, "expires_on", time.time() + 3600))


class _RefreshAbandoned(Exception):
    """The request that was refreshing the token was cancelled; waiters try again."""
