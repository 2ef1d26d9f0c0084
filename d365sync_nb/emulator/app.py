"""ASGI app emulating the D365 F&O OData metadata service (plus a small ``/_emulator/`` admin API).

The service endpoints are served by a lean hand-written ASGI dispatcher (the label phase is tens
of thousands of tiny requests); the admin endpoints use Starlette routing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hmac
import random
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .dataset import SCALES, Dataset, build_dataset

__all__ = ["CORRUPT_MODES", "EmulatorApp", "EmulatorOptions", "create_app"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CORRUPT_MODES = ("non_json", "truncated")
COLLECTIONS = ("DataEntities", "PublicEntities", "PublicEnumerations")
ACTIONS = {
    "/data/SystemNotifications/Microsoft.Dynamics.DataEntities.GetInstalledModules": (
        "GetInstalledModules"
    ),
    "/data/DataManagementEntities/Microsoft.Dynamics.DataEntities.GetApplicationVersion": (
        "GetApplicationVersion"
    ),
    "/data/DataManagementEntities/Microsoft.Dynamics.DataEntities.GetPlatformBuildVersion": (
        "GetPlatformBuildVersion"
    ),
}
ENDPOINTS = (*COLLECTIONS, "Labels", *ACTIONS.values())
REQUEST_LOG_SIZE = 200_000
_CHUNK = 256 * 1024

_JSON = b"application/json; odata.metadata=minimal; odata.streaming=true"
_PATH_RE = re.compile(
    r"^/Metadata/(DataEntities|PublicEntities|PublicEnumerations|Labels)(\(.*\))?/?$", re.S
)
_KEY_PAIR_RE = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*'((?:[^']|'')*)'\s*(?:,|$)", re.S)
_KEY_LITERAL_RE = re.compile(r"\s*'((?:[^']|'')*)'\s*$", re.S)
_LITERAL = r"'(?:[^']|'')*'|true|false|null|-?\d+(?:\.\d+)?"
_CLAUSE_RE = re.compile(
    rf"\s*(?:(?P<field>[A-Za-z_]\w*)\s+(?P<op>eq|ne)\s+(?P<value>{_LITERAL})"
    r"|(?P<fn>startswith|endswith|contains)\(\s*(?P<ffield>[A-Za-z_]\w*)\s*,\s*"
    r"(?P<fvalue>'(?:[^']|'')*')\s*\))\s*",
    re.S,
)
_AND_RE = re.compile(r"and\s+")
_HTML_BODY = (
    b"<!DOCTYPE html><html><head><title>Sign in to your account</title></head>"
    b"<body><p>Redirecting to login.microsoftonline.com ...</p></body></html>"
)


class ODataError(Exception):
    """An error the service answers with an OData error body."""

    def __init__(
        self, status: int, code: str, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


@dataclass
class EmulatorOptions:
    """Runtime behaviour of the emulator; every field can be changed while it runs.

    scale/version/seed select the dataset; latency_ms delays each service request;
    max_concurrency answers 429 + Retry-After (retry_after seconds) beyond K in-flight requests;
    fault_rate is the per-request probability of a fault (half 503, half a dropped connection);
    token requires ``Authorization: Bearer <token>``; page_size turns on server-driven paging;
    corrupt ("non_json" | "truncated") breaks collection bodies.
    """

    scale: str = "small"
    version: int = 1
    seed: int = 365
    latency_ms: float = 0.0
    max_concurrency: int | None = None
    retry_after: float = 1.0
    fault_rate: float = 0.0
    fault_seed: int = 365
    token: str | None = None
    page_size: int | None = None
    corrupt: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retry_after, str):  # "0.2" from a CLI flag or JSON
            self.retry_after = float(self.retry_after)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError when an option is out of range."""
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}: expected one of {', '.join(SCALES)}")
        if self.version not in (1, 2):
            raise ValueError(f"unknown version {self.version!r}: expected 1 or 2")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1 or None")
        if self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        if self.page_size is not None and self.page_size < 1:
            raise ValueError("page_size must be >= 1 or None")
        if self.corrupt is not None and self.corrupt not in CORRUPT_MODES:
            raise ValueError(f"corrupt must be None or one of {', '.join(CORRUPT_MODES)}")

    def public_dict(self) -> dict[str, Any]:
        """Options as JSON-able dict, with the token redacted."""
        data = dataclasses.asdict(self)
        data["token"] = None if self.token is None else "***"
        return data


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "scale": (str,),
    "version": (int,),
    "seed": (int,),
    "latency_ms": (int, float),
    "max_concurrency": (int, type(None)),
    "retry_after": (int, float, str),
    "fault_rate": (int, float),
    "fault_seed": (int,),
    "token": (str, type(None)),
    "page_size": (int, type(None)),
    "corrupt": (str, type(None)),
}


def _coerce_options(changes: dict[str, Any]) -> dict[str, Any]:
    """Check option names and types; ``retry_after`` may be a numeric string like "0.2"."""
    unknown = set(changes) - set(_OPTION_TYPES)
    if unknown:
        raise ValueError(f"unknown emulator option(s): {', '.join(sorted(unknown))}")
    out = {}
    for key, value in changes.items():
        types = _OPTION_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"option {key} has invalid value {value!r}")
        if key == "retry_after":
            value = float(value)
        out[key] = value
    return out


def _format_seconds(value: float) -> str:
    """Retry-After value: integers without decimals, fractions as given."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Collection:
    """One served collection with its name index and lazily cached serialized array."""

    def __init__(self, name: str, items: list[dict[str, Any]]) -> None:
        self.name = name
        self.items = items
        self.by_name = {item["Name"]: item for item in items}
        self.fields = frozenset(items[0]) if items else frozenset()
        self._chunks: list[bytes] | None = None

    @property
    def array_chunks(self) -> list[bytes]:
        """The serialized array in pieces: sent one by one, a big body never sits in one buffer
        and other requests are served in between."""
        if self._chunks is None:
            data = orjson.dumps(self.items)
            self._chunks = [data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b"[]"]
        return self._chunks


class ServedDataset:
    """A Dataset prepared for serving: indexes and pre-serialized collection bodies."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.collections = {
            "DataEntities": _Collection("DataEntities", dataset.data_entities),
            "PublicEntities": _Collection("PublicEntities", dataset.public_entities),
            "PublicEnumerations": _Collection("PublicEnumerations", dataset.enumerations),
        }
        for coll in self.collections.values():
            _ = coll.array_chunks  # pre-serialize outside the event loop
        self.labels = dataset.labels
        self.modules = dataset.modules


@functools.lru_cache(maxsize=1)
def _load_served(scale: str, version: int, seed: int) -> ServedDataset:
    return ServedDataset(build_dataset(scale, version, seed))


class _DropFilter:
    """Silences uvicorn's error log for connections the emulator drops on purpose."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = 0

    def expect(self) -> None:
        """Announce one intentional drop."""
        with self._lock:
            self._pending += 1

    def filter(self, record: Any) -> bool:
        """logging filter protocol: False drops the record."""
        if "without completing response" not in str(record.msg):
            return True
        with self._lock:
            if self._pending > 0:
                self._pending -= 1
                return False
        return True


DROP_FILTER = _DropFilter()


def _odata_literal(raw: str) -> Any:
    if raw.startswith("'"):
        return raw[1:-1].replace("''", "'")
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "null":
        return None
    return float(raw) if "." in raw else int(raw)


def _parse_filter(text: str, fields: frozenset[str]) -> Callable[[dict[str, Any]], bool]:
    """Compile a ``$filter`` expression (eq/ne, startswith/endswith/contains, joined by and)."""
    preds: list[Callable[[dict[str, Any]], bool]] = []
    pos, end = 0, len(text)
    while True:
        m = _CLAUSE_RE.match(text, pos)
        if not m:
            raise ODataError(
                400,
                "BadRequest",
                f"The query specified in the URI is not valid: unsupported $filter "
                f"near position {pos}: {text[pos : pos + 40]!r}",
            )
        name = m["field"] or m["ffield"]
        if name not in fields:
            raise ODataError(
                400, "BadRequest", f"Could not find a property named '{name}' in $filter."
            )
        if m["op"]:
            value, neg = _odata_literal(m["value"]), m["op"] == "ne"
            preds.append(lambda item, n=name, v=value, ng=neg: (item.get(n) == v) != ng)
        else:
            value, fn = _odata_literal(m["fvalue"]), m["fn"]
            method = {"startswith": "startswith", "endswith": "endswith"}.get(fn)

            def pred(
                item: dict[str, Any], n: str = name, v: str = value, meth: str | None = method
            ) -> bool:
                got = item.get(n)
                if not isinstance(got, str):
                    return False
                return getattr(got, meth)(v) if meth else v in got

            preds.append(pred)
        pos = m.end()
        if pos >= end:
            break
        m_and = _AND_RE.match(text, pos)
        if not m_and:
            raise ODataError(
                400,
                "BadRequest",
                f"The query specified in the URI is not valid: unsupported $filter "
                f"near position {pos}: {text[pos : pos + 40]!r}",
            )
        pos = m_and.end()
    return lambda item: all(p(item) for p in preds)


def _parse_key(text: str) -> dict[str, str] | str:
    """Parse an OData key ``('x')`` or ``(A='x',B='y')``; doubled quotes are unescaped."""
    inner = text[1:-1]
    m = _KEY_LITERAL_RE.match(inner)
    if m:
        return m[1].replace("''", "'")
    pairs: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        m = _KEY_PAIR_RE.match(inner, pos)
        if not m or m.end() == pos:
            raise ODataError(400, "BadRequest", f"Bad key segment: {text!r}")
        pairs[m[1]] = m[2].replace("''", "'")
        pos = m.end()
    if not pairs:
        raise ODataError(400, "BadRequest", f"Bad key segment: {text!r}")
    return pairs


def _int_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ODataError(400, "BadRequest", f"Invalid value for {name}: {raw!r}")
    return value


class _Request:
    """Per-request state of a service request."""

    __slots__ = ("auth", "base", "holds_slot", "method", "path", "scope", "send", "started", "t0")

    def __init__(self, scope: Scope, send: Send, path: str) -> None:
        self.t0 = time.perf_counter()
        self.started = time.time()
        self.scope, self.send, self.path = scope, send, path
        self.method: str = scope["method"]
        self.holds_slot = False
        host = b"127.0.0.1"
        self.auth: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"authorization":
                self.auth = value
        self.base = f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}"


class EmulatorApp:
    """The ASGI application plus its runtime state (options, dataset, stats, request log)."""

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        self.options = options if options is not None else EmulatorOptions()
        self.options.validate()
        self._config_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._served = _load_served(self.options.scale, self.options.version, self.options.seed)
        self._fault_rng = random.Random(self.options.fault_seed)
        self._log: collections.deque[tuple[float, str]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self._context_cache: dict[tuple[str, str], bytes] = {}
        self._reset_counters()
        self._in_flight = 0
        self._max_in_flight = 0
        self.admin = Starlette(
            routes=[
                Route("/_emulator/stats", self._admin_stats, methods=["GET"]),
                Route("/_emulator/reset-stats", self._admin_reset, methods=["POST"]),
                Route("/_emulator/config", self._admin_config, methods=["GET", "POST"]),
            ]
        )

    # -- state -----------------------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        """The dataset currently served (shared and pre-serialized: treat as read-only)."""
        return self._served.dataset

    def _reset_counters(self) -> None:
        self._total = 0
        self._by_endpoint: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self._by_status: dict[str, int] = dict.fromkeys(("200", "404", "429", "503", "dropped"), 0)
        self._last_started: float | None = None

    def configure(self, **changes: Any) -> EmulatorOptions:
        """Change options at runtime; switching scale/version/seed swaps the dataset."""
        changes = _coerce_options(changes)
        with self._config_lock:
            new = dataclasses.replace(self.options, **changes)
            new.validate()
            if (new.scale, new.version, new.seed) != (
                self.options.scale,
                self.options.version,
                self.options.seed,
            ):
                self._served = _load_served(new.scale, new.version, new.seed)
            if "fault_rate" in changes or "fault_seed" in changes:
                self._fault_rng = random.Random(new.fault_seed)
            for key in changes:  # mutate in place: holders of .options see the change
                setattr(self.options, key, getattr(new, key))
        return self.options

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last reset."""
        with self._stats_lock:
            return {
                "total_requests": self._total,
                "requests_by_endpoint": dict(self._by_endpoint),
                "responses_by_status": dict(self._by_status),
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "last_request_started_at": self._last_started,
            }

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log (in-flight requests stay counted)."""
        with self._stats_lock:
            self._reset_counters()
            self._max_in_flight = self._in_flight
            self._log.clear()

    def request_log(self) -> list[tuple[float, str]]:
        """(start time as time.time(), endpoint) of recent service requests, oldest first."""
        return list(self._log)

    def _count_status(self, status: str) -> None:
        with self._stats_lock:
            self._by_status[status] = self._by_status.get(status, 0) + 1

    # -- ASGI --------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/_emulator/"):
            await self.admin(scope, receive, send)
            return
        await self._service(scope, receive, send, path)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _service(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        req = _Request(scope, send, path)
        match = _PATH_RE.match(path)
        action = None
        if match:
            endpoint = match[1] if match[2] is None or match[1] == "Labels" else f"{match[1]}/item"
        else:
            action = ACTIONS.get(path.rstrip("/"))
            endpoint = action or "Unknown"
        options = self.options
        with self._stats_lock:
            self._total += 1
            self._by_endpoint[endpoint] = self._by_endpoint.get(endpoint, 0) + 1
            self._last_started = req.started
        self._log.append((req.started, endpoint))

        try:
            if options.token is not None and not (
                req.auth is not None
                and hmac.compare_digest(req.auth, b"Bearer " + options.token.encode())
            ):
                raise ODataError(
                    401,
                    "Unauthorized",
                    "Authentication failed: a valid bearer token is required.",
                    [(b"www-authenticate", b'Bearer error="invalid_token"')],
                )
            limit = options.max_concurrency
            with self._stats_lock:
                if limit is None or self._in_flight < limit:
                    self._in_flight += 1
                    self._max_in_flight = max(self._max_in_flight, self._in_flight)
                    req.holds_slot = True
            if not req.holds_slot:
                raise ODataError(
                    429,
                    "TooManyRequests",
                    "The request was throttled by service protection limits; retry later.",
                    [(b"retry-after", _format_seconds(options.retry_after).encode())],
                )
            if scope["method"] == "POST":
                await _drain(receive)
            if options.latency_ms:
                await asyncio.sleep(options.latency_ms / 1000)
            if options.fault_rate and self._fault_rng.random() < options.fault_rate:
                if self._fault_rng.random() < 0.5:
                    raise ODataError(
                        503,
                        "ServiceUnavailable",
                        "The service is temporarily unavailable. Please retry.",
                    )
                await self._drop(req)
                return
            served = self._served
            if match:
                if match[1] == "Labels":
                    await self._label(req, served, match[2])
                elif match[2] is None:
                    await self._collection(req, served, match[1])
                else:
                    await self._item(req, served, match[1], match[2])
            elif action:
                await self._action(req, served, action)
            else:
                raise ODataError(
                    404,
                    "NotFound",
                    f"No HTTP resource was found that matches the request URI '{req.base}{path}'.",
                )
        except ODataError as err:
            body = orjson.dumps({"error": {"code": err.code, "message": err.message}})
            await self._send(req, err.status, [body], extra=err.headers)
        finally:
            self._release(req)

    def _release(self, req: _Request) -> None:
        """Leave the in-flight count (once per request)."""
        if req.holds_slot:
            req.holds_slot = False
            with self._stats_lock:
                self._in_flight -= 1

    # -- responses ---------------------------------------------------------------------------------
    async def _send(
        self,
        req: _Request,
        status: int,
        parts: list[bytes],
        content_type: bytes = _JSON,
        extra: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """Send a response; bookkeeping happens before the last piece leaves, so a client that
        has the whole response also sees it in the stats."""
        self._count_status(str(status))
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(sum(len(p) for p in parts)).encode()),
            (b"odata-version", b"4.0"),
            (b"ms-dyn-aid", str(uuid.uuid4()).encode()),
            (b"server-timing", f"app;dur={(time.perf_counter() - req.t0) * 1000:.2f}".encode()),
            *extra,
        ]
        send = req.send
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for part in parts[:-1]:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        self._release(req)
        await send({"type": "http.response.body", "body": parts[-1] if parts else b""})

    async def _drop(self, req: _Request) -> None:
        """Start a response, send part of it, then let the connection close mid-body."""
        self._count_status("dropped")
        self._release(req)
        DROP_FILTER.expect()
        headers = [
            (b"content-type", _JSON),
            (b"content-length", b"65536"),
            (b"ms-dyn-aid", str(uuid.uuid4()).encode()),
        ]
        await req.send({"type": "http.response.start", "status": 200, "headers": headers})
        await req.send(
            {"type": "http.response.body", "body": b'{"@odata.context":"', "more_body": True}
        )

    def _context(self, base: str, fragment: str) -> bytes:
        """``@odata.context`` URL as a JSON string literal (cached per base and fragment)."""
        key = (base, fragment)
        cached = self._context_cache.get(key)
        if cached is None:
            if len(self._context_cache) > 1000:
                self._context_cache.clear()
            cached = orjson.dumps(_context_url(base, fragment))
            self._context_cache[key] = cached
        return cached

    # -- handlers ----------------------------------------------------------------------------------
    async def _collection(self, req: _Request, served: ServedDataset, name: str) -> None:
        if req.method != "GET":
            raise _method_not_allowed("GET")
        coll = served.collections[name]
        options = self.options
        query = req.scope["query_string"]
        if not query and options.page_size is None:
            ctx = self._context(req.base, name)
            parts = [b'{"@odata.context":' + ctx + b',"value":', *coll.array_chunks, b"}"]
        else:
            parts = [self._query_body(coll, req, query.decode("latin-1"), options.page_size)]
        if options.corrupt == "non_json":
            await self._send(req, 200, [_HTML_BODY], content_type=b"text/html; charset=utf-8")
            return
        if options.corrupt == "truncated":
            body = b"".join(parts)
            parts = [body[: len(body) // 2]]
        await self._send(req, 200, parts)

    def _query_body(
        self, coll: _Collection, req: _Request, query: str, page_size: int | None
    ) -> bytes:
        """Body for a collection request with query options and/or server paging."""
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        items: list[dict[str, Any]] = coll.items
        flt = params.get("$filter")
        if flt:
            pred = _parse_filter(flt, coll.fields)
            items = [item for item in items if pred(item)]
        skip = _int_param(params, "$skip")
        top = _int_param(params, "$top")
        if skip:
            items = items[skip:]
        if top is not None:
            items = items[:top]
        total = len(items)
        fields: list[str] | None = None
        if params.get("$select"):
            fields = [f.strip() for f in params["$select"].split(",") if f.strip()]
            bad = [f for f in fields if f not in coll.fields]
            if bad:
                raise ODataError(
                    400,
                    "BadRequest",
                    f"Could not find a property named '{bad[0]}' on type "
                    f"'Microsoft.Dynamics.Metadata.{coll.name[:-1]}'.",
                )
        next_link = None
        if page_size is not None:
            start = _int_param(params, "$skiptoken") or 0
            items = items[start : start + page_size]
            if start + page_size < total:
                keep = [(k, v) for k, v in pairs if k != "$skiptoken"]
                keep.append(("$skiptoken", str(start + page_size)))
                query = urlencode(keep, quote_via=quote, safe="$,()")
                next_link = f"{req.base}{req.path}?{query}"
        if fields is not None:
            items = [{f: item[f] for f in fields} for item in items]
            fragment = f"{coll.name}({','.join(fields)})"
        else:
            fragment = coll.name
        out: dict[str, Any] = {"@odata.context": _context_url(req.base, fragment)}
        if params.get("$count") == "true":
            out["@odata.count"] = total
        out["value"] = items
        if next_link:
            out["@odata.nextLink"] = next_link
        return orjson.dumps(out)

    async def _item(self, req: _Request, served: ServedDataset, name: str, key_text: str) -> None:
        if req.method != "GET":
            raise _method_not_allowed("GET")
        key = _parse_key(key_text)
        if isinstance(key, dict):
            if set(key) != {"Name"}:
                raise ODataError(400, "BadRequest", f"Bad key segment: {key_text!r}")
            key = key["Name"]
        item = served.collections[name].by_name.get(key)
        if item is None:
            raise ODataError(404, "NotFound", f"Resource not found for the segment '{name}'.")
        ctx = _context_url(req.base, f"{name}/$entity")
        await self._send(req, 200, [orjson.dumps({"@odata.context": ctx, **item})])

    async def _label(self, req: _Request, served: ServedDataset, key_text: str | None) -> None:
        if req.method != "GET":
            raise _method_not_allowed("GET")
        if key_text is None:
            raise ODataError(
                400,
                "BadRequest",
                "Labels can only be read one at a time: Labels(Id='...',Language='...').",
            )
        key = _parse_key(key_text)
        if not isinstance(key, dict) or "Id" not in key or set(key) - {"Id", "Language"}:
            raise ODataError(400, "BadRequest", f"Bad key segment: {key_text!r}")
        label_id = key["Id"]
        language = key.get("Language", "en-us")
        text = served.labels.get(label_id)
        if text is None:
            raise ODataError(
                404, "NotFound", f"Label '{label_id}' was not found for language '{language}'."
            )
        body = b"".join(
            (
                b'{"@odata.context":',
                self._context(req.base, "Labels/$entity"),
                b',"Id":',
                orjson.dumps(label_id),
                b',"Language":',
                orjson.dumps(language),
                b',"Value":',
                orjson.dumps(text),
                b"}",
            )
        )
        await self._send(req, 200, [body])

    async def _action(self, req: _Request, served: ServedDataset, action: str) -> None:
        if req.method != "POST":
            raise _method_not_allowed("POST")
        ds = served.dataset
        if action == "GetInstalledModules":
            out: dict[str, Any] = {
                "@odata.context": f"{req.base}/data/$metadata#Collection(Edm.String)",
                "value": served.modules,
            }
        else:
            value = (
                ds.application_version if action == "GetApplicationVersion" else ds.platform_version
            )
            out = {"@odata.context": f"{req.base}/data/$metadata#Edm.String", "value": value}
        await self._send(req, 200, [orjson.dumps(out)])

    # -- admin -------------------------------------------------------------------------------------
    async def _admin_stats(self, request: Request) -> Response:
        return _admin_json(self.stats())

    async def _admin_reset(self, request: Request) -> Response:
        self.reset_stats()
        return _admin_json(self.stats())

    async def _admin_config(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = orjson.loads(await request.body() or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object of option changes")
                await run_in_threadpool(lambda: self.configure(**changes))
            except (ValueError, orjson.JSONDecodeError) as exc:
                return _admin_json({"error": {"code": "BadRequest", "message": str(exc)}}, 400)
        return _admin_json(self.options.public_dict())


def _admin_json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(
        orjson.dumps(data),
        status,
        headers={"ms-dyn-aid": str(uuid.uuid4())},
        media_type="application/json",
    )


def _context_url(base: str, fragment: str) -> str:
    return f"{base}/Metadata/$metadata#{fragment}"


async def _drain(receive: Receive) -> None:
    """Read and discard a request body."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def _method_not_allowed(allowed: str) -> ODataError:
    return ODataError(
        405,
        "MethodNotAllowed",
        f"The requested resource does not support this HTTP method; use {allowed}.",
        [(b"allow", allowed.encode())],
    )


def create_app(options: EmulatorOptions | None = None) -> EmulatorApp:
    """Build the ASGI app for ``options`` (defaults: small scale, version 1, no faults)."""
    return EmulatorApp(options)
