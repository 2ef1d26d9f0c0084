"""Async client of the D365 F&O metadata service (OData v4 over httpx).

Retries 429 (honouring ``Retry-After``), 502/503/504, dropped connections and garbled bodies
with bounded attempts; adapts its concurrency to the service (:mod:`.limiter`: adaptive by
default, ``concurrency=N`` for exactly N); refreshes the token once on 401; tags each request
with ``x-ms-client-request-id``; errors name URL, status and ``ms-dyn-aid``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from d365sync_nb.config import ConnectionSettings
from d365sync_nb.d365.auth import TokenCredential, TokenProvider, make_credential
from d365sync_nb.d365.limiter import AdaptiveLimit, Limiter, Outcome
from d365sync_nb.d365.stats import HttpStats, endpoint_class
from d365sync_nb.errors import (
    D365AuthError,
    D365Error,
    D365HTTPError,
    D365ResponseError,
    D365TransportError,
)
from d365sync_nb.metadata import (
    DataEntity,
    EnvironmentVersion,
    InstalledModule,
    Label,
    PublicEntity,
    PublicEnumeration,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_READ_TIMEOUT = 30.0  # seconds without a byte before a read counts as stalled
CONNECT_TIMEOUT = 15.0
MODULES_ACTION = "data/SystemNotifications/Microsoft.Dynamics.DataEntities.GetInstalledModules"
APP_VERSION_ACTION = (
    "data/DataManagementEntities/Microsoft.Dynamics.DataEntities.GetApplicationVersion"
)
PLATFORM_VERSION_ACTION = (
    "data/DataManagementEntities/Microsoft.Dynamics.DataEntities.GetPlatformBuildVersion"
)
# Sent with every request. Cookies are not kept: the service is stateless (a bearer token each
# time), and httpx's cookie jar cost ~55 us of CPU per answer.
HEADERS = {
    "Accept": "application/json",
    "OData-Version": "4.0",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": f"python-httpx/{httpx.__version__}",
}
# PublicEntities per request: a parsed chunk is ~5x its JSON (about 7.6 MB of dicts per 100
# entities at the realistic scale) and up to ``window`` chunks are held at once. 100 keeps the
# sync's peak RSS near 110 MB (250 peaked at 152 MB) at the same phase time.
PUBLIC_ENTITIES_CHUNK = 100


def default_transport(concurrency: int) -> httpx.AsyncBaseTransport:
    """aiohttp under the httpx API: a fraction of httpcore's CPU per request at high fan-out.

    ``concurrency``: the most requests that will be in flight (the limiter's ceiling)."""
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(
        max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2
    )
    return AiohttpTransport(limits=limits)


def label_path(label_id: str, language: str) -> str:
    """``Metadata/Labels(Id='...',Language='...')`` with OData quote doubling and URL encoding."""

    def literal(value: str) -> str:
        return quote(value.replace("'", "''"), safe="@:'")

    return f"Metadata/Labels(Id='{literal(label_id)}',Language='{literal(language)}')"


class D365MetadataClient:
    """One environment's metadata service. Use as ``async with D365MetadataClient(...)``."""

    def __init__(
        self,
        base_url: str,
        *,
        credential: TokenCredential | None = None,
        token_provider: TokenProvider | None = None,
        concurrency: int | None = None,
        max_attempts: int = 6,
        max_throttle_attempts: int = 30,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_stalls: int = 3,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limit_factory: Callable[[int | None], AdaptiveLimit] | None = None,
    ) -> None:
        """``concurrency``: exactly N requests in flight (lower only while throttled); ``None``:
        adaptive (:mod:`.limiter`). ``limit_factory(concurrency)`` replaces the algorithm
        (benchmarks compare alternatives with it)."""
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        make_limit = limit_factory or _default_limit
        self.limiter = Limiter(make_limit(concurrency), on_change=self._limit_changed)
        self.max_attempts = max_attempts
        self.max_throttle_attempts = max_throttle_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = HttpStats()
        if token_provider is None and credential is not None:
            token_provider = TokenProvider(credential, self.base_url)
        self._auth = token_provider
        self._transport = transport
        self.read_timeout = read_timeout  # no byte for this long: the read is stalled
        self.max_stalls = max_stalls  # stalled reads of one request before giving up
        self._live: httpx.AsyncBaseTransport | None = None  # the transport while open
        self._extensions: dict[str, Any] = {}

    @classmethod
    def from_settings(
        cls, settings: ConnectionSettings, *, credential: TokenCredential | None = None, **kw: Any
    ) -> D365MetadataClient:
        """A client for these settings; pass ``token_provider`` to share a cached token."""
        if "token_provider" not in kw:
            cred = credential if credential is not None else make_credential(settings)
            kw["credential"] = cred
        kw.setdefault("read_timeout", settings.read_timeout)
        return cls(settings.base_url, concurrency=settings.concurrency, **kw)

    def __repr__(self) -> str:
        return (
            f"D365MetadataClient(base_url={self.base_url!r}, "
            f"concurrency={self.concurrency or 'adaptive'})"
        )

    async def __aenter__(self) -> D365MetadataClient:
        self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _open(self) -> httpx.AsyncBaseTransport:
        """The transport, sent to directly: httpx's models and transport seam without
        ``AsyncClient``, whose URL merging, cookie jar and hooks took ~40% of the client's CPU
        per request (measured: 380 -> 210 us per label at 32 in flight)."""
        if self._live is None:
            self._live = self._transport or default_transport(self.limiter.ceiling)
            # per read, not in total: the PublicEntities answer streams tens of MB
            timeout = httpx.Timeout(
                connect=CONNECT_TIMEOUT, read=self.read_timeout, write=60.0, pool=60.0
            )
            self._extensions = {"timeout": timeout.as_dict()}
        return self._live

    def _url(self, url: str) -> str:
        """An absolute URL: ``url`` itself (e.g. an ``@odata.nextLink``) or under the base."""
        return url if "://" in url else f"{self.base_url}/{url}"

    async def aclose(self) -> None:
        if self._live is not None:
            transport, self._live = self._live, None
            await transport.aclose()
            if self.stats.requests:
                log.debug("%s: %s", self.base_url, self.limiter.summary())

    def _limit_changed(self, limit: int) -> None:
        self.stats.limit_changed(limit)

    # -- one request, with retries -------------------------------------------------------
    async def request_json(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        not_found_ok: bool = False,
    ) -> Any:
        """Send one request (retrying what is transient) and return the parsed JSON body.

        With ``not_found_ok`` a 404 returns ``None`` instead of raising.
        """
        self._open()
        full_url = self._url(url)
        endpoint = endpoint_class(url)
        sample = endpoint == "Labels"  # single items: their latencies compare with each other
        attempt = 0  # attempts that count against max_attempts
        tries = 0  # every attempt of this request (the request log's attempt number)
        throttles = 0
        stalls = 0
        refreshed = False
        while True:
            attempt += 1
            tries += 1
            request_id = str(uuid.uuid4())
            headers = {**HEADERS, "x-ms-client-request-id": request_id}
            token = await self._auth.token() if self._auth else None
            if token:
                headers["Authorization"] = f"Bearer {token}"
            context = {"method": method, "url": full_url, "request_id": request_id}
            sent = Sent(self.stats, endpoint, tries, request_id)
            try:
                request = httpx.Request(
                    method,
                    full_url,
                    params=params,
                    json=json_body,
                    headers=headers,
                    extensions=self._extensions,
                )
                response = await self._attempt(sent, sample, request)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                kind = _error_kind(exc)
                stalls += kind == "timeout"
                last = attempt >= self.max_attempts or stalls >= self.max_stalls
                sent.failed(kind, retried=not last)
                if last and kind == "timeout":
                    raise D365TransportError(
                        f"the service stopped answering: no data for {self.read_timeout:g} s, "
                        f"{stalls} times (raise read_timeout to wait longer)",
                        **context,
                    ) from None
                if last:
                    raise D365TransportError(
                        f"no answer after {attempt} attempts ({type(exc).__name__}: "
                        f"{exc or 'connection dropped'})",
                        **context,
                    ) from None
                await self._backoff(attempt)
                continue
            except asyncio.CancelledError:  # cancelled while in flight: the attempt was sent
                sent.failed("cancelled", retried=False)
                raise
            body = response.content
            context["activity_id"] = response.headers.get("ms-dyn-aid")
            context["server_timing"] = response.headers.get("server-timing")
            status = response.status_code
            sent.answered(status, len(body), context["activity_id"])
            if status == 429:
                throttles += 1
                attempt -= 1  # throttling is the service asking us to wait, not a failure
                if throttles >= self.max_throttle_attempts:
                    sent.log()
                    raise D365HTTPError(
                        f"429 Too Many Requests: still throttled after {throttles} waits",
                        status=429,
                        **context,
                    )
                sent.log(retry_cause="429")
                await self._wait_retry_after(response, throttles)
                continue
            if status == 401 and self._auth and not refreshed:
                refreshed = True
                attempt -= 1
                sent.log(retry_cause="401")
                await self._auth.token(force_refresh=True, stale=token)
                continue
            if status in RETRY_STATUSES and attempt < self.max_attempts:
                sent.log(retry_cause=str(status))
                await self._backoff(attempt, response)
                continue
            if status == 404 and not_found_ok:
                sent.log()
                return None
            if status >= 400:
                sent.log()
                raise self._http_error(response, **context)
            try:
                data = self._parse(response, body)
            except D365ResponseError as exc:
                # HTML or another non-JSON answer means a wrong URL, not a glitch: no retry
                retry = attempt < self.max_attempts and exc.transient
                sent.log(
                    error="garbled" if exc.transient else "not_json",
                    retry_cause="garbled" if retry else None,
                )
                if not retry:
                    raise D365ResponseError(exc.detail, **context) from None
                await self._backoff(attempt)
                continue
            sent.log()
            return data

    async def _attempt(self, sent: Sent, sample: bool, request: httpx.Request) -> httpx.Response:
        """One attempt holding a limiter slot, its body read; the answer's status tells the
        limiter how the service copes (``sample``: its latency compares with other samples: the
        service's own ``Server-Timing`` when it sends one, else the round trip)."""
        transport = self._open()
        ticket = await self.limiter.acquire()
        outcome, served = Outcome.OTHER, None
        try:
            sent.start()
            response = await transport.handle_async_request(request)
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
            outcome = _outcome(response.status_code)
            if sample and outcome is Outcome.OK:
                served = _served_seconds(response)
            return response
        finally:
            sample = sample and outcome is Outcome.OK
            self.limiter.release(ticket, outcome, sample=sample, latency=served)

    @staticmethod
    def _parse(response: httpx.Response, body: bytes) -> Any:
        ctype = response.headers.get("content-type", "")
        if "json" not in ctype.lower():
            raise D365ResponseError(_not_odata(response), transient=False)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise D365ResponseError(
                f"the JSON body is invalid or truncated ({len(body)} bytes: {exc})"
            ) from None

    def _http_error(self, response: httpx.Response, **context: Any) -> D365HTTPError:
        status = response.status_code
        message = ""
        try:
            err = orjson.loads(response.content).get("error", {})
            message = str(err.get("message") or err.get("code") or "")
        except (orjson.JSONDecodeError, AttributeError):
            message = _not_odata(response)
        phrase = f"{status} {response.reason_phrase}".strip()
        text = f"{phrase}: {message}" if message else phrase
        if status in (401, 403):
            hint = (
                "check D365FO_CLIENT_ID/D365FO_TENANT_ID/D365FO_CLIENT_SECRET or `az login`, "
                "and that the app is registered in the environment"
                if self._auth
                else "the service needs a token, but none is sent to a loopback URL"
            )
            return D365AuthError(f"{text} ({hint})", status=status, **context)
        return D365HTTPError(text, status=status, **context)

    async def _backoff(self, attempt: int, response: httpx.Response | None = None) -> None:
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        if response is not None:
            delay = max(delay, _retry_after(response) or 0)
        await self._wait(delay * (0.5 + random.random() / 2))

    async def _wait_retry_after(self, response: httpx.Response, throttles: int) -> None:
        delay = _retry_after(response)
        if delay is None:
            delay = min(self.backoff_cap, self.backoff_base * 2 ** min(throttles, 6))
        await self._wait(delay)

    async def _wait(self, seconds: float) -> None:
        """Sleep before a retry; the time spent is recorded (even when cut short)."""
        start = time.monotonic()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.stats.waited(time.monotonic() - start)

    def http_record(self, *, percentiles: bool = True) -> dict[str, Any]:
        """The ``http`` record of everything this client sent (see :mod:`.stats`)."""
        limit = self.limiter.algorithm
        return self.stats.record(
            percentiles=percentiles,
            start_limit=limit.initial,
            ceiling=limit.ceiling,
            adaptive=limit.adaptive,
        )

    # -- version ---------------------------------------------------------------------------
    async def get_installed_modules(self) -> list[InstalledModule]:
        data = await self.request_json("POST", MODULES_ACTION, json_body={})
        return [InstalledModule.parse(str(line)) for line in _value(data, MODULES_ACTION)]

    async def get_application_version(self) -> str | None:
        data = await self.request_json("POST", APP_VERSION_ACTION, json_body={})
        return _optional_str(data)

    async def get_platform_version(self) -> str | None:
        data = await self.request_json("POST", PLATFORM_VERSION_ACTION, json_body={})
        return _optional_str(data)

    async def get_environment_version(self) -> EnvironmentVersion:
        modules, app, platform = await gather_or_first_error(
            self.get_installed_modules(),
            self.get_application_version(),
            self.get_platform_version(),
        )
        return EnvironmentVersion(
            modules=modules, application_version=app, platform_version=platform
        )

    # -- collections -----------------------------------------------------------------------
    async def iter_pages(
        self, collection: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of ``/Metadata/<collection>``, following ``@odata.nextLink`` to the end."""
        url: str | None = f"Metadata/{collection}"
        seen: set[str] = set()
        while url is not None:
            data = await self.request_json("GET", url, params=params)
            yield _value(data, url)
            next_link = data.get("@odata.nextLink") if isinstance(data, dict) else None
            if next_link is not None:
                if not str(http_url := httpx.URL(self.base_url).join(next_link)).startswith(
                    self.base_url + "/"
                ):
                    raise D365ResponseError(
                        f"@odata.nextLink points outside the environment ({http_url.host}); "
                        "not following it with this environment's token"
                    )
                if next_link in seen:
                    raise D365ResponseError(f"@odata.nextLink loops back to {next_link}")
                seen.add(next_link)
                params = None  # the link carries the query
            url = next_link

    async def get_collection(self, collection: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async for page in self.iter_pages(collection):
            items.extend(page)
        return items

    async def iter_chunks(
        self,
        collection: str,
        chunk_size: int = 500,
        window: int = 4,
        expected: int | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The collection in ``$top``/``$skip`` chunks, up to ``window`` fetched at once.

        Bounds memory for the large PublicEntities body. ``expected`` (the item count the
        caller expects, e.g. from DataEntities) keeps the window from asking past the end;
        without it the first chunk is asked alone. A request once sent is always awaited, never
        abandoned, so the service and the http record agree. Falls back to one plain request
        when the service ignores ``$top`` or ``$skip``.
        """

        async def fetch(index: int) -> list[dict[str, Any]]:
            params = {"$top": str(chunk_size), "$skip": str(index * chunk_size)}
            items: list[dict[str, Any]] = []
            async for page in self.iter_pages(collection, params):
                items.extend(page)
            return items

        pending: dict[int, asyncio.Task[list[dict[str, Any]]]] = {}
        next_index = 0
        limit = 1 if expected is None else max(1, -(-expected // chunk_size))
        ended = False
        overran = False  # asked past the expected count already
        first_name: object = None
        try:
            while True:
                while not ended and len(pending) < window and next_index < limit:
                    pending[next_index] = asyncio.ensure_future(fetch(next_index))
                    next_index += 1
                if not pending:
                    if ended:
                        return
                    # as many as expected, and the last chunk was full: one more chunk (usually
                    # empty), then a whole window at a time
                    limit = next_index + (window if overran else 1)
                    overran = True
                    continue
                index = min(pending)
                items = await pending.pop(index)
                if len(items) > chunk_size or (
                    index > 0 and items and items[0].get("Name") == first_name
                ):
                    # $top or $skip ignored: read it whole, minus the chunks already yielded
                    await _settle(pending)
                    if index == 0:
                        yield items
                        return
                    already = index * chunk_size
                    async for page in self.iter_pages(collection):
                        page, already = page[already:], max(0, already - len(page))
                        if page:
                            yield page
                    return
                if index == 0 and items:
                    first_name = items[0].get("Name")
                if len(items) < chunk_size:
                    ended = True
                    await _settle(pending)  # chunks past the end: empty answers
                if items:
                    yield items
        finally:
            for task in pending.values():  # only when failing or cancelled
                task.cancel()
            if pending:
                await asyncio.gather(*pending.values(), return_exceptions=True)

    async def get_data_entities(self) -> list[DataEntity]:
        return [DataEntity.model_validate(d) for d in await self.get_collection("DataEntities")]

    async def get_enumerations(self) -> list[PublicEnumeration]:
        items = await self.get_collection("PublicEnumerations")
        return [PublicEnumeration.model_validate(d) for d in items]

    async def iter_public_entities(
        self, chunk_size: int = PUBLIC_ENTITIES_CHUNK, expected: int | None = None
    ) -> AsyncIterator[list[PublicEntity]]:
        async for chunk in self.iter_chunks("PublicEntities", chunk_size, expected=expected):
            yield [PublicEntity.from_service(d) for d in chunk]

    # -- labels ----------------------------------------------------------------------------
    async def get_label(self, label_id: str, language: str = "en-us") -> Label:
        """One label; an id the service does not know comes back with ``value=None``."""
        data = await self.request_json("GET", label_path(label_id, language), not_found_ok=True)
        if data is None:
            return Label(id=label_id, language=language, value=None)
        value = data.get("Value") if isinstance(data, dict) else None
        return Label(id=label_id, language=language, value=value if value is not None else "")

    async def fetch_labels(
        self,
        label_ids: Iterable[str],
        on_label: Callable[[Label], Awaitable[None] | None],
        language: str = "en-us",
    ) -> None:
        """Fetch labels, as many in flight as the limiter allows; call ``on_label`` each.

        One worker per slot of the limiter's ceiling: a worker waiting out a ``Retry-After``
        leaves its slot to another. The first error cancels the remaining work and is raised.
        """
        ids = iter(label_ids)

        async def worker() -> None:
            for label_id in ids:
                label = await self.get_label(label_id, language)
                result = on_label(label)
                if result is not None:
                    await result

        await gather_or_first_error(*(worker() for _ in range(self.limiter.ceiling)))


async def gather_or_first_error(*coros: Coroutine[Any, Any, Any]) -> list[Any]:
    """Run coroutines concurrently; the first failure cancels the rest and is raised as is."""
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coros]
    except BaseExceptionGroup as group_error:
        raise _first_error(group_error) from None
    return [t.result() for t in tasks]


async def _settle(pending: dict[int, asyncio.Task[Any]]) -> None:
    """Await requests already sent whose answers are no longer needed (never abandon one)."""
    await asyncio.gather(*pending.values(), return_exceptions=True)
    pending.clear()


def _first_error(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        real = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = (real or list(error.exceptions))[0]
    return error


def _value(data: Any, where: str) -> list[Any]:
    if not isinstance(data, dict) or not isinstance(data.get("value"), list):
        raise D365ResponseError(f"{where}: expected an OData collection with a 'value' list")
    return data["value"]


def _optional_str(data: Any) -> str | None:
    if isinstance(data, dict):
        value = data.get("value")
        return None if value is None else str(value)
    return None


__all__ = ["D365Error", "D365MetadataClient", "label_path"]


_DURATION = re.compile(r"\bdur=([0-9]+(?:\.[0-9]+)?)")


def _served_seconds(response: httpx.Response) -> float | None:
    """The service's own time for an answer: the largest ``dur`` of its ``Server-Timing``
    header, or None. The limiter prefers it to the round trip, which also counts this
    process's own delays (a busy event loop is not a slow service)."""
    value = response.headers.get("server-timing")
    durations = _DURATION.findall(value) if value else ()
    return max(map(float, durations)) / 1000 if durations else None


def _default_limit(concurrency: int | None) -> AdaptiveLimit:
    return AdaptiveLimit() if concurrency is None else AdaptiveLimit.fixed(concurrency)


def _outcome(status: int) -> Outcome:
    """What an answer's status says about the service's load."""
    if status < 300 or status == 404:
        return Outcome.OK
    if status == 429:
        return Outcome.THROTTLED
    if status == 503:
        return Outcome.UNAVAILABLE
    return Outcome.OTHER


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds; HTTP dates are rare here)."""
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, min(float(raw), 120.0))
    except ValueError:
        return None


def _not_odata(response: httpx.Response) -> str:
    """One line about an answer that is not the service's JSON (never the page itself)."""
    ctype = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    body = response.content.lstrip()[:200].lower()
    kind = "an HTML page" if b"<html" in body or b"<!doctype" in body else ctype
    return (
        f"the answer is {kind}, not JSON: this does not look like the D365 metadata service "
        "(check the base URL)"
    )


def _error_kind(exc: httpx.TransportError | httpx.DecodingError) -> str:
    """What went wrong on the wire: timeout, connect (no connection), garbled (a body that
    cannot be decoded) or dropped."""
    if isinstance(exc, httpx.DecodingError):
        return "garbled"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):  # aiohttp: refused = timeout
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "dropped"


class Sent:
    """One attempt on its way: timed from the moment it holds a concurrency slot."""

    __slots__ = ("activity_id", "attempt", "endpoint", "request_id", "size", "started",
                 "started_at", "stats", "status")  # fmt: skip

    def __init__(self, stats: HttpStats, endpoint: str, attempt: int, request_id: str) -> None:
        self.stats, self.endpoint, self.attempt, self.request_id = (
            stats, endpoint, attempt, request_id
        )  # fmt: skip
        self.started = self.started_at = 0.0
        self.status: int | None = None
        self.size = 0
        self.activity_id: str | None = None

    def start(self) -> None:
        self.started_at, self.started = time.time(), time.perf_counter()

    def answered(self, status: int, size: int, activity_id: str | None) -> None:
        self.status, self.size, self.activity_id = status, size, activity_id

    def failed(self, error: str, *, retried: bool) -> None:
        self.log(error=error, retry_cause="transport" if retried else None)

    def log(self, *, error: str | None = None, retry_cause: str | None = None) -> None:
        if not self.started:  # never got a slot (cancelled while waiting): not sent
            return
        self.stats.attempt(
            started_at=self.started_at,
            endpoint=self.endpoint,
            status=self.status,
            error=error,
            attempt=self.attempt,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            size=self.size,
            retry_cause=retry_cause,
            request_id=self.request_id,
            activity_id=self.activity_id,
        )
