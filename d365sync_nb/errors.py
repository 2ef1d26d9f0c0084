"""One exception tree for the whole package.

- ``D365SyncError``: base of everything raised on purpose; ``str(exc)`` is one readable line.
  - ``ConfigurationError``: bad input from the user (URL, strategy, profile, argument).
  - ``SessionNotFoundError``: no running or recorded session has that id.
  - ``SessionConflictError``: a session is already running for that version.
  - ``CacheError``: the local cache cannot be used (a path that is not a directory, read-only,
    a full disk); ``CacheDamagedError``: the cache file is damaged.
  - ``RequestLogUnavailable``: a session's request log is no longer kept (its aggregates are).
  - ``D365Error``: talking to the metadata service failed.
    - ``D365HTTPError``: the service answered with an error status (``status``, ``activity_id``).
      - ``D365AuthError``: 401/403, after one token refresh.
    - ``D365TransportError``: no usable answer (connection refused, dropped, timed out).
    - ``D365ResponseError``: an answer that is not the JSON the service sends (HTML, truncated).
"""

from __future__ import annotations

from d365sync_nb.redaction import redact_url
from d365sync_nb.text import one_line


def clean_message(text: object) -> str:
    """The one place a message is made fit to show: one bounded line, URL passwords masked."""
    return one_line(redact_url(text if isinstance(text, str) else str(text)))


class D365SyncError(Exception):
    """Base class: every error this package raises on purpose. ``str(exc)`` is one line (no
    control characters, bounded) with URL passwords masked, whatever text went into it."""

    def __str__(self) -> str:
        return clean_message(super().__str__())


class ConfigurationError(D365SyncError, ValueError):
    """Bad input: a malformed URL, an unknown strategy or profile, an invalid argument."""


class SessionNotFoundError(D365SyncError, KeyError):
    """No running or recorded session has this id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return clean_message(self.args[0]) if self.args else "session not found"


class NotInCacheError(D365SyncError, KeyError):
    """The cache holds no such version, entity or enumeration (the message names close ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return clean_message(self.args[0]) if self.args else "not in the cache"


class SessionConflictError(D365SyncError):
    """A sync session is already running for this version. ``elsewhere``: it runs outside this
    process (a watch or another process holds the cache), so this process cannot list, follow
    or cancel it."""

    def __init__(self, message: str, *, elsewhere: bool = False) -> None:
        super().__init__(message)
        self.elsewhere = elsewhere


class CacheError(D365SyncError):
    """The local cache cannot be used: its path, permissions or disk (the message names it)."""


class CacheDamagedError(CacheError):
    """The cache file is damaged (not a database, or corrupt): a sync moves it aside."""


class RequestLogUnavailable(D365SyncError):
    """A session's request log was pruned (only the most recent sessions keep one)."""


class D365Error(D365SyncError):
    """Talking to the D365 metadata service failed."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        request_id: str | None = None,
        activity_id: str | None = None,
        server_timing: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.request_id = request_id
        self.activity_id = activity_id
        self.server_timing = server_timing
        self.detail = message
        super().__init__(self._format(message))

    def _format(self, message: str) -> str:
        where = f"{self.method} {self.url}: " if self.url else ""
        trace = []
        if self.activity_id:
            trace.append(f"ms-dyn-aid {self.activity_id}")
        if self.request_id:
            trace.append(f"x-ms-client-request-id {self.request_id}")
        if self.server_timing:
            trace.append(f"server-timing {self.server_timing}")
        suffix = f" ({', '.join(trace)})" if trace else ""
        return f"{where}{message}{suffix}"


class D365HTTPError(D365Error):
    """The service answered with an error status."""

    def __init__(self, message: str, *, status: int, **kwargs: str | None) -> None:
        self.status = status
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class D365AuthError(D365HTTPError):
    """Authentication failed (401/403) even after refreshing the token once."""


class D365TransportError(D365Error):
    """No usable answer: connection refused, dropped or timed out, after retries."""


class D365ResponseError(D365Error):
    """The answer is not the JSON the service sends (HTML, truncated, wrong shape).

    ``transient`` is False when retrying cannot help (an HTML page: the URL is wrong).
    """

    def __init__(self, message: str, *, transient: bool = True, **kwargs: str | None) -> None:
        self.transient = transient
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
