"""Async client of the D365 F&O metadata service (OData v4 over aiohttp, or a given httpx
transport): the request path.

Each request is retried as :mod:`.retry` says (429 as told, 500 a few times, 502/503/504 and
transport failures with backoff, one token refresh on 401), bounded in time (a total deadline
per request) and size (the decoded body); concurrency adapts to the service (:mod:`.limiter`).
Collections are paged and chunked by :mod:`.paging`; items are validated by :mod:`.shapes`.
Each request is tagged with ``x-ms-client-request-id``; errors are one line naming URL, status
and ``ms-dyn-aid``, and every transport-level exception of the stack (httpx, aiohttp, the OS)
is a :class:`~d365sync_nb.errors.D365TransportError`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from itertools import count
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import httpx
import orjson
import yarl
from aiohttp.http_exceptions import ContentEncodingError

from d365sync_nb.config import ConnectionSettings
from d365sync_nb.d365 import paging
from d365sync_nb.d365.auth import TokenCredential, TokenProvider, make_credential
from d365sync_nb.d365.deadlines import Deadlines
from d365sync_nb.d365.limiter import AdaptiveLimit, Limiter, Outcome
from d365sync_nb.d365.retry import Retries, RetryPolicy, Sent, retry_after
from d365sync_nb.d365.shapes import describe, parse_item, parse_items
from d365sync_nb.d365.stats import HttpStats, endpoint_class
from d365sync_nb.d365.wire import AnswerTooLarge, SingleItems, WireAnswer, WireError
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
from d365sync_nb.text import service_text

log = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT = 30.0  # seconds without a byte before a read counts as stalled
CONNECT_TIMEOUT = 15.0
DEFAULT_REQUEST_DEADLINE = 600.0  # seconds in flight for a collection (labels: a fifth)
# The largest real answer is the whole PublicEntities collection of a big environment, tens of
# MB (when the service ignores $top); a decoded body past a few times that is refused.
DEFAULT_MAX_ANSWER_MB = 256
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
REQUEST_ID = "x-ms-client-request-id"
AGAIN = object()  # an answer that asks for another attempt (after the wait, already waited)


class DeadlineExceeded(Exception):
    """An attempt ran past its request's total deadline (internal: becomes one line)."""


# Everything the transport stack raises for a failed exchange: httpx's own errors, aiohttp's
# that httpx_aiohttp does not map (a garbage status line, a 100 KB header), the OS's.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TransportError,
    httpx.DecodingError,
    aiohttp.ClientError,
    aiohttp.http_exceptions.HttpProcessingError,
    OSError,
    EOFError,
    TimeoutError,
    DeadlineExceeded,
    WireError,  # (AnswerTooLarge is one)
)


def default_transport(concurrency: int) -> httpx.AsyncBaseTransport:
    """aiohttp under the httpx API, for callers that want an httpx transport (the client itself
    sends through :func:`default_session` when given none).

    ``concurrency``: the most requests that will be in flight (the limiter's ceiling)."""
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(
        max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2
    )
    return AiohttpTransport(limits=limits)


class Answer:
    """An answer's status line and headers, as :class:`httpx.Response` names them (the direct
    aiohttp path hands these to the same code that reads an httpx answer)."""

    __slots__ = ("headers", "reason_phrase", "status_code")

    def __init__(self, status_code: int, reason_phrase: str, headers: Any) -> None:
        self.status_code, self.reason_phrase, self.headers = status_code, reason_phrase, headers


# An answer as the request path reads it: httpx's (a given transport), aiohttp's or a single
# item's (wire.py).
Response = httpx.Response | Answer | WireAnswer


# A single item's answer (a label) is one small read: its stall is no complete answer within
# the read timeout, watched by the attempt's own deadline timer (``_attempt``) instead of
# aiohttp's per-read timer, which took two more timers per request.
SINGLE_ITEM_TIMEOUT = aiohttp.ClientTimeout(
    total=None, sock_connect=CONNECT_TIMEOUT, sock_read=None, connect=60.0
)


def default_session(concurrency: int, read_timeout: float = DEFAULT_READ_TIMEOUT) -> Any:
    """The aiohttp session the client sends through when no httpx transport is given: the
    label path without httpx's models (request, URL, headers, response stream), which took
    about half of a sync's CPU. It sends :data:`HEADERS` with every request; bodies are
    decompressed by aiohttp; redirects not followed."""
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    # per read, not in total: the PublicEntities answer streams tens of MB
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT, sock_read=read_timeout, connect=60.0
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",),
        cookie_jar=aiohttp.DummyCookieJar(), headers=HEADERS,
    )  # fmt: skip


# What a label id or language is made of nearly always: nothing to quote or encode.
_PLAIN_LITERAL = re.compile(r"[A-Za-z0-9@:_.\-]*")


def label_path(label_id: str, language: str) -> str:
    """``Metadata/Labels(Id='...',Language='...')`` with OData quote doubling and URL encoding."""

    def literal(value: str) -> str:
        if _PLAIN_LITERAL.fullmatch(value):
            return value
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
        max_server_errors: int = 3,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE,
        max_answer_mb: float = DEFAULT_MAX_ANSWER_MB,
        max_pages: int = paging.MAX_PAGES,
        transport: httpx.AsyncBaseTransport | None = None,
        limit_factory: Callable[[int | None], AdaptiveLimit] | None = None,
    ) -> None:
        """``concurrency``: exactly N requests in flight (lower only while throttled); ``None``:
        adaptive (:mod:`.limiter`). ``limit_factory(concurrency)`` replaces the algorithm
        (benchmarks compare alternatives with it). ``request_deadline``: seconds a collection
        request may spend in flight, all attempts together (single items get a fifth);
        ``max_answer_mb``: the largest decoded body accepted; ``max_pages``: pages of one
        collection when the service gives no ``@odata.count``."""
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        make_limit = limit_factory or _default_limit
        self.limiter = Limiter(make_limit(concurrency), on_change=self._limit_changed)
        self.policy = RetryPolicy(
            max_attempts=max_attempts,
            max_throttle_attempts=max_throttle_attempts,
            max_stalls=max_stalls,
            max_server_errors=max_server_errors,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            deadline=request_deadline,
        )
        self.max_answer_bytes = int(max_answer_mb * 2**20)
        self.max_pages = max_pages
        self.stats = HttpStats()
        if token_provider is None and credential is not None:
            token_provider = TokenProvider(credential, self.base_url)
        self._auth = token_provider
        self._transport = transport
        self.read_timeout = read_timeout  # no byte for this long: the read is stalled
        self._live: httpx.AsyncBaseTransport | None = None  # the transport while open
        self._session: Any = None  # the aiohttp session while open (no transport given)
        self._single: SingleItems | None = None  # single-item GETs while open (wire.py)
        self._extensions: dict[str, Any] = {}
        self._deadlines = Deadlines()  # every attempt's deadline, under one timer
        self._base_yarl: yarl.URL | None = None  # the base URL parsed (see _yarl)
        # request ids: one random GUID prefix per client and a counter (unique, and no uuid4
        # per request)
        self._id_prefix = str(uuid.uuid4())[:24]
        self._ids = count(1)

    @classmethod
    def from_settings(
        cls, settings: ConnectionSettings, *, credential: TokenCredential | None = None, **kw: Any
    ) -> D365MetadataClient:
        """A client for these settings; pass ``token_provider`` to share a cached token."""
        if "token_provider" not in kw:
            cred = credential if credential is not None else make_credential(settings)
            kw["credential"] = cred
        kw.setdefault("read_timeout", settings.read_timeout)
        kw.setdefault("request_deadline", settings.request_deadline)
        kw.setdefault("max_answer_mb", settings.max_answer_mb)
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

    def _open(self) -> None:
        """Open the way out: the given httpx transport, sent to directly (httpx's models
        without ``AsyncClient``, whose URL merging, cookie jar and hooks took ~40% of the
        client's CPU per request), or else an aiohttp session (:func:`default_session`)."""
        if self._transport is not None:
            if self._live is None:
                self._live = self._transport
                # per read, not in total: the PublicEntities answer streams tens of MB
                timeout = httpx.Timeout(
                    connect=CONNECT_TIMEOUT, read=self.read_timeout, write=60.0, pool=60.0
                )
                self._extensions = {"timeout": timeout.as_dict()}
        elif self._session is None:
            self._session = default_session(self.limiter.ceiling, self.read_timeout)
            self._single = SingleItems(self.base_url, HEADERS, self.max_answer_bytes)

    def _url(self, url: str) -> str:
        """An absolute URL: ``url`` itself (e.g. an ``@odata.nextLink``) or under the base."""
        return url if "://" in url else f"{self.base_url}/{url}"

    async def aclose(self) -> None:
        live, self._live = self._live, None
        session, self._session = self._session, None
        single, self._single = self._single, None
        if single is not None:
            single.close()
        self._deadlines.close()
        if live is not None or session is not None:
            if live is not None:
                await live.aclose()
            if session is not None:
                await session.close()
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
        """Send one request (retrying what is transient, :mod:`.retry`) and return the parsed
        JSON body. With ``not_found_ok`` a 404 returns ``None`` instead of raising."""
        self._open()
        full_url, endpoint = self._url(url), endpoint_class(url)
        if params:
            full_url += ("&" if "?" in full_url else "?") + urlencode(params, safe="$")
        sample = endpoint == "Labels"  # single items: their latencies compare with each other
        retries = Retries(self.policy, self.policy.deadline_for(endpoint))
        while True:
            retries.next_try()
            token = await self._auth.token() if self._auth else None
            request_id = f"{self._id_prefix}{next(self._ids):012x}"
            # the constant HEADERS are the session's own (merged by aiohttp ~2 us faster than
            # passed with each request); the httpx path adds them (_exchange_httpx)
            headers = {REQUEST_ID: request_id}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            context: dict[str, Any] = {"method": method, "url": full_url, "request_id": request_id}
            sent = Sent(self.stats, endpoint, retries.tries, request_id)
            try:
                response, body = await self._attempt(
                    sent, sample, retries, method, full_url, headers, json_body
                )
            except TRANSPORT_ERRORS as exc:
                await self._after_failure(exc, sent, retries, context)
                continue
            except asyncio.CancelledError:  # cancelled while in flight: the attempt was sent
                sent.failed("cancelled", retried=False)
                raise
            context["activity_id"] = _header(response, "ms-dyn-aid")
            sent.answered(response.status_code, len(body), context["activity_id"])
            result = await self._after_answer(
                response, body, sent, retries, context, token=token, not_found_ok=not_found_ok
            )
            if result is not AGAIN:
                return result

    async def _after_failure(
        self, exc: BaseException, sent: Sent, retries: Retries, context: dict[str, Any]
    ) -> None:
        """An attempt without a usable answer: wait before the next, or raise the one line."""
        kind = _error_kind(exc)
        again = retries.transport_error(kind)
        sent.failed(kind, retried=again)
        if not again:
            raise self._transport_error(exc, kind, retries, context) from None
        await self._wait(self.policy.backoff(retries.attempt))

    async def _after_answer(
        self,
        response: Response,
        body: bytearray,
        sent: Sent,
        retries: Retries,
        context: dict[str, Any],
        *,
        token: str | None,
        not_found_ok: bool,
    ) -> Any:
        """The parsed body of a complete answer, :data:`AGAIN` after waiting for a retry, or
        the error it means."""
        status = response.status_code
        if status >= 300:  # (the header is read for an error only)
            context["server_timing"] = _header(response, "server-timing")
        if status == 429:
            if not retries.throttled():
                sent.log()
                raise D365HTTPError(
                    f"429 Too Many Requests: still throttled after {retries.throttles} waits",
                    status=429,
                    **context,
                )
            sent.log(retry_cause="429")
            await self._wait(self.policy.throttle_wait(retries.throttles, retry_after(response)))
            return AGAIN
        if status == 401 and self._auth and retries.refresh_token():
            sent.log(retry_cause="401")
            await self._auth.token(force_refresh=True, stale=token)
            return AGAIN
        if retries.status_retried(status):
            sent.log(retry_cause=str(status))
            await self._wait(self.policy.backoff(retries.attempt, retry_after(response)))
            return AGAIN
        if status == 404 and not_found_ok:
            sent.log()
            return None
        if status >= 400:
            sent.log()
            raise self._http_error(response, body, **context)
        try:
            data = self._parse(response, body)
        except D365ResponseError as exc:
            context["server_timing"] = _header(response, "server-timing")
            # HTML or another non-JSON answer means a wrong URL, not a glitch: no retry
            again = exc.transient and retries.garbled_retried()
            sent.log(
                error="garbled" if exc.transient else "not_json",
                retry_cause="garbled" if again else None,
            )
            if not again:
                raise D365ResponseError(exc.detail, transient=False, **context) from None
            await self._wait(self.policy.backoff(retries.attempt))
            return AGAIN
        sent.log()
        return data

    async def _attempt(
        self,
        sent: Sent,
        sample: bool,
        retries: Retries,
        method: str,
        url: str,
        headers: dict[str, str],
        json_body: Any,
    ) -> tuple[Response, bytearray]:
        """One attempt holding a limiter slot, its body read (bounded in size and, with the
        request's other attempts, in time); the answer's status tells the limiter how the
        service copes (``sample``: its latency compares with other samples: the service's own
        ``Server-Timing`` when it sends one, else the round trip). A single item through
        aiohttp (``sample``) that has no complete answer within ``read_timeout`` is a stall."""
        ticket = await self.limiter.acquire()
        outcome, served = Outcome.OTHER, None
        started = time.monotonic()
        try:
            sent.start()
            budget = retries.remaining()
            if budget <= 0:
                raise DeadlineExceeded()
            single = sample and self._session is not None
            stall = single and self.read_timeout < budget
            watch = self._deadlines.start(self.read_timeout if stall else budget)
            response: Response
            try:
                if self._session is not None:
                    response, body = await self._exchange(
                        method, url, headers, json_body, single=single
                    )
                else:
                    response, body = await self._exchange_httpx(method, url, headers, json_body)
            except asyncio.CancelledError:
                if self._deadlines.end(watch, cancelled=True):  # its deadline, not a cancel
                    if stall:
                        raise aiohttp.SocketTimeoutError() from None
                    raise DeadlineExceeded() from None
                raise
            except BaseException:
                self._deadlines.end(watch, cancelled=False)
                raise
            self._deadlines.end(watch, cancelled=False)
            outcome = _outcome(response.status_code)
            if sample and outcome is Outcome.OK:
                served = _served_seconds(response)
            return response, body
        finally:
            retries.in_flight += time.monotonic() - started
            sample = sample and outcome is Outcome.OK
            self.limiter.release(ticket, outcome, sample=sample, latency=served)

    async def _exchange(
        self, method: str, url: str, headers: dict[str, str], json_body: Any, *, single: bool
    ) -> tuple[Answer | WireAnswer, bytearray]:
        """One exchange through aiohttp: the answer's status line and headers, and its
        decoded body read once, refused past ``max_answer_bytes`` (a gzip bomb is never
        inflated whole). ``single``: a single item: a GET under the base URL goes through
        :mod:`.wire` (a fraction of aiohttp's CPU per request), anything else through aiohttp
        without its per-read timer."""
        single_items = self._single
        if single and method == "GET" and single_items and single_items.serves(url):
            answer = await single_items.get(url, headers)
            return answer, answer.body
        data = None
        if json_body is not None:
            data = orjson.dumps(json_body)
            headers["Content-Type"] = "application/json"
        async with self._session.request(
            method, self._yarl(url), headers=headers, data=data,
            allow_redirects=False, timeout=SINGLE_ITEM_TIMEOUT if single else self._session.timeout,
        ) as response:  # fmt: skip
            body = bytearray()
            content = response.content
            while chunk := await content.readany():
                body += chunk
                if len(body) > self.max_answer_bytes:
                    raise AnswerTooLarge()
                if content.at_eof():  # the whole body (a cut one raises instead): no more reads
                    break
            return Answer(response.status, response.reason or "", response.headers), body

    def _yarl(self, url: str) -> yarl.URL:
        """``url`` as aiohttp takes it, as built (not re-quoted). A path under the base URL is
        joined to the base, parsed once: parsing each label's whole URL took ~3.5 us, the join
        ~1 us."""
        base = self._base_yarl
        if base is None:
            base = self._base_yarl = yarl.URL(self.base_url, encoded=True)
        prefix = self.base_url + "/"
        if url.startswith(prefix) and "?" not in url and "#" not in url and not base.query_string:
            return base.with_path(f"{base.raw_path.rstrip('/')}/{url[len(prefix):]}", encoded=True)
        return yarl.URL(url, encoded=True)

    async def _exchange_httpx(
        self, method: str, url: str, headers: dict[str, str], json_body: Any
    ) -> tuple[httpx.Response, bytearray]:
        """One exchange through the given httpx transport (tests swap it)."""
        assert self._live is not None
        request = httpx.Request(
            method, url, json=json_body, headers={**HEADERS, **headers},
            extensions=self._extensions,
        )  # fmt: skip
        response = await self._live.handle_async_request(request)
        try:
            return response, await self._read(response)
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response) -> bytearray:
        """The decoded body, refused past ``max_answer_bytes`` (a gzip bomb is never inflated
        whole)."""
        body = bytearray()  # orjson parses it as is: no second copy of a large answer
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_answer_bytes:
                raise AnswerTooLarge()
        return body

    def _transport_error(
        self, exc: BaseException, kind: str, retries: Retries, context: dict[str, Any]
    ) -> D365Error:
        """The one line that ends a request without a usable answer."""
        if kind == "deadline":
            return D365TransportError(
                f"no complete answer within {retries.deadline:g} s, the request's deadline "
                "(raise request_deadline in the profile to wait longer)",
                **context,
            )
        if kind == "too_large":
            mb = self.max_answer_bytes / 2**20
            return D365ResponseError(
                f"the answer is larger than {mb:g} MB decoded; not retried (raise "
                "max_answer_mb in the profile if the service really sends this much)",
                transient=False,
                **context,
            )
        if kind == "timeout":
            return D365TransportError(
                f"the service stopped answering: no data for {self.read_timeout:g} s, "
                f"{retries.stalls} times (raise read_timeout to wait longer)",
                **context,
            )
        reason = service_text(exc, 200) or "connection dropped"
        return D365TransportError(
            f"no answer after {retries.attempt} attempts ({type(exc).__name__}: {reason})",
            **context,
        )

    @staticmethod
    def _parse(response: Response, body: bytes | bytearray) -> Any:
        ctype = response.headers.get("content-type", "")
        if "json" not in ctype.lower():
            raise D365ResponseError(_not_odata(response, body), transient=False)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise D365ResponseError(
                f"the JSON body is invalid or truncated ({len(body)} bytes: {exc})"
            ) from None

    def _http_error(
        self, response: Response, body: bytes | bytearray, **context: Any
    ) -> D365HTTPError:
        status = response.status_code
        message = ""
        try:
            err = orjson.loads(body).get("error", {})
            message = str(err.get("message") or err.get("code") or "")
            inner = err.get("innererror")  # the detail behind a generic message
            if isinstance(inner, dict) and inner.get("message"):
                message = f"{message} ({inner['message']})" if message else str(inner["message"])
        except (orjson.JSONDecodeError, AttributeError):
            message = _not_odata(response, body)
        message = service_text(message)
        phrase = service_text(f"{status} {response.reason_phrase}", 80)
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
        lines = paging.collection_value(data, "GetInstalledModules")
        return [InstalledModule.parse(service_text(line, 1000)) for line in lines]

    async def get_application_version(self) -> str | None:
        data = await self.request_json("POST", APP_VERSION_ACTION, json_body={})
        return _optional_str(data, "GetApplicationVersion")

    async def get_platform_version(self) -> str | None:
        data = await self.request_json("POST", PLATFORM_VERSION_ACTION, json_body={})
        return _optional_str(data, "GetPlatformBuildVersion")

    async def get_environment_version(self) -> EnvironmentVersion:
        modules, app, platform = await gather_or_first_error(
            self.get_installed_modules(),
            self.get_application_version(),
            self.get_platform_version(),
        )
        return EnvironmentVersion(
            modules=modules, application_version=app, platform_version=platform
        )

    # -- collections (paging.py) -------------------------------------------------------------
    def iter_pages(
        self, collection: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[list[Any]]:
        """Pages of ``/Metadata/<collection>``, following ``@odata.nextLink`` (bounded)."""
        return paging.iter_pages(self, collection, params)

    async def get_collection(self, collection: str) -> list[Any]:
        items: list[Any] = []
        async for page in self.iter_pages(collection):
            items.extend(page)
        return items

    def iter_chunks(
        self,
        collection: str,
        chunk_size: int = 500,
        window: int = 4,
        expected: int | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The collection in ``$top``/``$skip`` chunks (see :func:`.paging.iter_chunks`)."""
        return paging.iter_chunks(self, collection, chunk_size, window, expected)

    async def get_data_entities(self) -> list[DataEntity]:
        items = await self.get_collection("DataEntities")
        return parse_items("DataEntities", items, DataEntity.model_validate)

    async def get_enumerations(self) -> list[PublicEnumeration]:
        items = await self.get_collection("PublicEnumerations")
        return parse_items("PublicEnumerations", items, PublicEnumeration.model_validate)

    async def iter_public_entities(
        self, chunk_size: int = PUBLIC_ENTITIES_CHUNK, expected: int | None = None
    ) -> AsyncIterator[list[PublicEntity]]:
        seen = 0
        async for chunk in self.iter_chunks("PublicEntities", chunk_size, expected=expected):
            yield [
                parse_item("PublicEntities", seen + i, d, PublicEntity.from_service)
                for i, d in enumerate(chunk)
            ]
            seen += len(chunk)

    # -- labels ----------------------------------------------------------------------------
    async def get_label(self, label_id: str, language: str = "en-us") -> Label:
        """One label; an id the service does not know comes back with ``value=None``."""
        data = await self.request_json("GET", label_path(label_id, language), not_found_ok=True)
        if data is None:
            return Label.fetched(label_id, language, None)
        if not isinstance(data, dict):
            raise D365ResponseError(
                f"Labels item {service_text(label_id, 80)!r}: must be an object, got "
                f"{describe(data)}",
                transient=False,
            )
        value = data.get("Value")
        if value is not None and not isinstance(value, str):
            raise D365ResponseError(
                f"Labels item {service_text(label_id, 80)!r}: Value must be a string, got "
                f"{describe(value)}",
                transient=False,
            )
        # checked above: no validation needed (a label per request)
        return Label.fetched(label_id, language, value if value is not None else "")

    async def fetch_labels(
        self,
        label_ids: Iterable[str],
        on_label: Callable[[Label], Awaitable[None] | None],
        language: str = "en-us",
    ) -> None:
        """Fetch labels, as many in flight as the limiter allows; call ``on_label`` each.

        One worker per slot of the limiter's ceiling: a worker waiting out a ``Retry-After``
        leaves its slot to another. A label the service refuses (after retries: a 4xx other
        than 401/429, a 5xx, an answer of the wrong shape) is passed on as a failed label
        (:attr:`Label.error`); anything else (401, throttled to the end, no answer) cancels the
        remaining work and is raised.
        """
        ids = iter(label_ids)

        async def worker() -> None:
            for label_id in ids:
                try:
                    label = await self.get_label(label_id, language)
                except (D365HTTPError, D365ResponseError) as exc:
                    if not label_refused(exc):
                        raise
                    label = Label(id=label_id, language=language, value=None, error=str(exc))
                    label.http_status = getattr(exc, "status", None)
                result = on_label(label)
                if result is not None:
                    await result

        await gather_or_first_error(*(worker() for _ in range(self.limiter.ceiling)))


def label_refused(exc: D365Error) -> bool:
    """Whether a label request's error is that label's alone (the sync goes on without it)."""
    if isinstance(exc, D365HTTPError):
        return exc.status not in (401, 429)
    return isinstance(exc, D365ResponseError)


async def gather_or_first_error(*coros: Coroutine[Any, Any, Any]) -> list[Any]:
    """Run coroutines concurrently; the first failure cancels the rest and is raised as is."""
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coros]
    except BaseExceptionGroup as group_error:
        raise _first_error(group_error) from None
    return [t.result() for t in tasks]


def _first_error(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        real = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        error = (real or list(error.exceptions))[0]
    return error


def _optional_str(data: Any, action: str) -> str | None:
    """A version action's answer: ``{"value": "..."}`` or, from some versions, a bare JSON
    string."""
    value = data.get("value") if isinstance(data, dict) else data
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise D365ResponseError(
            f"{action}: the version must be a string, got {describe(value)}", transient=False
        )
    return service_text(value, 200)


def _header(response: Response, name: str) -> str | None:
    value = response.headers.get(name)
    return service_text(value, 200) if value else None


__all__ = ["D365Error", "D365MetadataClient", "label_path"]


_DURATION = re.compile(r"\bdur=([0-9]+(?:\.[0-9]+)?)")


def _served_seconds(response: Response) -> float | None:
    """The service's own time for an answer: the largest ``dur`` of its ``Server-Timing``
    header, or None. The limiter prefers it to the round trip, which also counts this
    process's own delays (a busy event loop is not a slow service)."""
    value = response.headers.get("server-timing")
    if not value:
        return None
    found = _DURATION.findall(value)
    if len(found) == 1:  # the usual answer: one metric
        served = float(found[0])
        return served / 1000 if served < 3.6e6 else None
    durations = [d for d in map(float, found) if d < 3.6e6]
    return max(durations) / 1000 if durations else None  # (more than an hour: not a timing)


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


def _not_odata(response: Response, body: bytes | bytearray) -> str:
    """One line about an answer that is not the service's JSON (never the page itself)."""
    if 300 <= response.status_code < 400:
        where = response.headers.get("location")
        to = f" to {service_text(where, 120)}" if where else ""
        return (
            f"the service redirected{to} ({response.status_code}); redirects are not followed "
            "(check the base URL)"
        )
    raw_type = response.headers.get("content-type", "").split(";")[0]
    ctype = service_text(raw_type, 60) or "no content type"
    head = body.lstrip()[:200].lower()
    kind = "an HTML page" if b"<html" in head or b"<!doctype" in head else ctype
    return (
        f"the answer is {kind}, not JSON: this does not look like the D365 metadata service "
        "(check the base URL)"
    )


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception behind it is a ``kind``."""
    for _ in range(5):
        if exc is None:
            return False
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _error_kind(exc: BaseException) -> str:
    """What went wrong on the wire: timeout (a stalled read), connect (no connection), garbled
    (a body that cannot be decoded), malformed (not HTTP), deadline, too_large or dropped."""
    if isinstance(exc, DeadlineExceeded):
        return "deadline"
    if isinstance(exc, WireError):  # AnswerTooLarge too
        return exc.kind
    if isinstance(exc, httpx.DecodingError) or _caused_by(exc, ContentEncodingError):
        return "garbled"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "dropped"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectionError):  # as httpx_aiohttp maps it: connect
        return "connect"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):  # aiohttp: refused = timeout
        return "connect"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.http_exceptions.HttpProcessingError):
        return "malformed"
    return "dropped"
