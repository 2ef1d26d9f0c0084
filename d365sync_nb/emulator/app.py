"""The ASGI app emulating the D365 F&O OData metadata service: path dispatch, the service
handlers and their responses, the served (pre-serialized) dataset, stats, the request log and the
small ``/_emulator/`` admin API. Service requests go through a lean hand-written dispatcher (the
label phase is tens of thousands of tiny requests); only the admin API uses Starlette routing."""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .dataset import Dataset, build_dataset
from .faults import DROP_FILTER, FaultGate
from .odata import ODataError, context_url, parse_key, query_body
from .options import LAST_RELEASE, EmulatorOptionError, EmulatorOptions, coerce_options

__all__ = ["EmulatorApp", "EmulatorOptions"]


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
_HTML_BODY = (
    b"<!DOCTYPE html><html><head><title>Sign in to your account</title></head>"
    b"<body><p>Redirecting to login.microsoftonline.com ...</p></body></html>"
)


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
        self.label_text = dataset.label_text
        self.modules = dataset.modules


@functools.lru_cache(maxsize=1)
def _load_served(scale: str, version: int, seed: int) -> ServedDataset:
    return ServedDataset(build_dataset(scale, version, seed))


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
        self._gate = FaultGate(self.options.fault_seed, self._stats_lock)
        self._log: collections.deque[tuple[float, str]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self._context_cache: dict[tuple[str, str], bytes] = {}
        self._reset_counters()
        self._release_at = self._release_deadline(self.options.release_after)
        self.admin = Starlette(
            routes=[
                Route("/_emulator/stats", self._admin_stats, methods=["GET"]),
                Route("/_emulator/reset-stats", self._admin_reset, methods=["POST"]),
                Route("/_emulator/config", self._admin_config, methods=["GET", "POST"]),
                Route("/_emulator/release", self._admin_release, methods=["POST"]),
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
        changes = coerce_options(changes)
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
                self._gate.reseed(new.fault_seed)
            for key in changes:  # mutate in place: holders of .options see the change
                setattr(self.options, key, getattr(new, key))
            if "release_after" in changes:
                self._release_at = self._release_deadline(new.release_after)
        return self.options

    def next_release(self) -> EmulatorOptions:
        """Move to the next release now (version + 1); EmulatorOptionError at the last one."""
        with self._config_lock:
            self._release_at = None
        if self.options.version >= LAST_RELEASE:
            raise EmulatorOptionError(
                f"already at the last release (dataset version {self.options.version})"
            )
        return self.configure(version=self.options.version + 1)

    @staticmethod
    def _release_deadline(seconds: float | None) -> float | None:
        return None if seconds is None else time.monotonic() + seconds

    def _release_if_due(self) -> None:
        """The upgrade of ``release_after``, applied by the first request after its time."""
        with self._config_lock:
            due = self._release_at is not None and time.monotonic() >= self._release_at
            if due:
                self._release_at = None
        if due and self.options.version < LAST_RELEASE:
            self.configure(version=self.options.version + 1)

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last reset."""
        with self._stats_lock:
            return {
                "total_requests": self._total,
                "requests_by_endpoint": dict(self._by_endpoint),
                "responses_by_status": dict(self._by_status),
                "in_flight": self._gate.in_flight,
                "max_in_flight": self._gate.max_in_flight,
                "last_request_started_at": self._last_started,
            }

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log (in-flight requests stay counted)."""
        with self._stats_lock:
            self._reset_counters()
            self._gate.reset_peak()
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
        if self._release_at is not None:
            self._release_if_due()
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

        gate = self._gate
        try:
            gate.admit(options, req.auth)  # 401, then 429 beyond max_concurrency
            req.holds_slot = True
            if gate.delays(options, req.method):  # most requests skip the coroutine
                await gate.delay(options, req.method, receive)
            if gate.fault(options):  # raises 503; True: drop the connection
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
            elif path.rstrip("/") == "/Metadata":
                await self._service_document(req)
            else:
                raise ODataError(
                    404,
                    "NotFound",
                    f"No HTTP resource was found that matches the request URI '{req.base}{path}'.",
                )
        except ODataError as err:
            body = orjson.dumps(err.body())
            await self._send(req, err.status, [body], extra=err.headers)
        finally:
            self._release(req)

    def _release(self, req: _Request) -> None:
        """Leave the in-flight count (once per request)."""
        if req.holds_slot:
            req.holds_slot = False
            self._gate.release()

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
            cached = orjson.dumps(context_url(base, fragment))
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
            body = query_body(
                name,
                coll.items,
                coll.fields,
                query.decode("latin-1"),
                options.page_size,
                req.base,
                req.path,
            )
            parts = [body]
        if options.corrupt == "non_json":
            await self._send(req, 200, [_HTML_BODY], content_type=b"text/html; charset=utf-8")
            return
        if options.corrupt == "truncated":
            body = b"".join(parts)
            parts = [body[: len(body) // 2]]
        await self._send(req, 200, parts)

    async def _item(self, req: _Request, served: ServedDataset, name: str, key_text: str) -> None:
        if req.method != "GET":
            raise _method_not_allowed("GET")
        key = parse_key(key_text)
        if isinstance(key, dict):
            if set(key) != {"Name"}:
                raise ODataError(400, "BadRequest", f"Bad key segment: {key_text!r}")
            key = key["Name"]
        item = served.collections[name].by_name.get(key)
        if item is None:
            raise ODataError(404, "NotFound", f"Resource not found for the segment '{name}'.")
        ctx = context_url(req.base, f"{name}/$entity")
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
        try:
            key = parse_key(key_text)
        except ODataError:
            key = None
        if not isinstance(key, dict) or "Id" not in key or set(key) - {"Id", "Language"}:
            raise ODataError(  # the service's shape: a generic message, the detail inside
                400,
                "",
                "The request is invalid.",
                inner=f"The key in the request URI is not valid for resource "
                f"'Microsoft.Dynamics.Metadata.Label'. Key segment: {key_text}",
            )
        label_id = key["Id"]
        asked = str(key.get("Language", "en-us"))
        language = _language_casing(asked)
        text = served.label_text(label_id, asked)
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

    async def _service_document(self, req: _Request) -> None:
        """``GET /Metadata/``: the service document, the endpoints the service offers."""
        if req.method != "GET":
            raise _method_not_allowed("GET")
        names = ("DataEntities", "Labels", "PublicEntities", "PublicEnumerations")
        body = {
            "@odata.context": f"{req.base}/Metadata/$metadata",
            "value": [{"name": n, "kind": "EntitySet", "url": n} for n in names],
        }
        await self._send(req, 200, [orjson.dumps(body)])

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

    async def _admin_release(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.next_release)
        except EmulatorOptionError as exc:
            return _admin_json({"error": {"code": "BadRequest", "message": str(exc)}}, 409)
        return _admin_json(self.options.public_dict())


def _admin_json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(
        orjson.dumps(data),
        status,
        headers={"ms-dyn-aid": str(uuid.uuid4())},
        media_type="application/json",
    )


def _method_not_allowed(allowed: str) -> ODataError:
    return ODataError(
        405,
        "MethodNotAllowed",
        f"The requested resource does not support this HTTP method; use {allowed}.",
        [(b"allow", allowed.encode())],
    )


def _language_casing(language: str) -> str:
    """The service answers a language in its own casing: ``en-us`` asked, ``en-US`` answered."""
    head, sep, region = language.partition("-")
    return f"{head.lower()}{sep}{region.upper() if len(region) == 2 else region}"
