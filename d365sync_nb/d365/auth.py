"""Bearer tokens from azure-identity credentials (sync or async), cached until near expiry."""

from __future__ import annotations

import asyncio
import inspect
import time
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
    """Caches one token for ``<base_url>/.default``; refreshes it near expiry or on demand."""

    def __init__(self, credential: TokenCredential, base_url: str, *, margin: float = 120) -> None:
        self._credential = credential
        self.scope = f"{base_url.rstrip('/')}/.default"
        self._margin = margin
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"TokenProvider(scope={self.scope!r}, cached={self._token is not None})"

    async def token(self, *, force_refresh: bool = False, stale: str | None = None) -> str:
        """A valid token. ``stale``: the token a 401 rejected (refresh only if still current)."""
        async with self._lock:
            current = self._token
            fresh = current is not None and time.time() < self._expires_on - self._margin
            if force_refresh and stale is not None and current != stale:
                fresh = current is not None  # another request already refreshed it
            elif force_refresh:
                fresh = False
            if fresh and current is not None:
                return current
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
            self._token = str(access.token)
            self._expires_on = float(getattr(access, "expires_on", time.time() + 3600))
            return self._token
