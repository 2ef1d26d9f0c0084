"""A hostile stand-in for the D365 metadata service: a real HTTP/1.1 server on loopback.

It answers like the service (version actions, DataEntities, PublicEntities with $top/$skip,
PublicEnumerations, Labels) until a test overrides an answer with something no honest service
sends: a wrong shape, a garbage status line, a body that drips or never ends, a gzip bomb, an
error message full of escape sequences. Written on raw asyncio streams so that it can send bytes
no HTTP framework would (that is the point); it runs on its own thread and loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]

    @property
    def endpoint(self) -> str:
        """``DataEntities``, ``Labels``, ``GetInstalledModules``, ..."""
        tail = self.path.rstrip("/").rsplit("/", 1)[-1]
        return tail.split("(")[0].rsplit(".", 1)[-1]

    @property
    def label_id(self) -> str | None:
        match = re.search(r"Labels\(Id='(.*)',Language='(.*)'\)", unquote(self.path))
        return match[1].replace("''", "'") if match else None


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # JSON-ready, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            payload = self.body
            ctype = self.headers.get("Content-Type", "application/json")
        else:
            payload = json.dumps(self.body).encode()
            ctype = "application/json; odata.metadata=minimal"
        headers = {"Content-Type": ctype, **self.headers, "Content-Length": str(len(payload))}
        reason = {
            200: "OK",
            302: "Found",
            400: "Bad Request",
            403: "Forbidden",
            404: "Not Found",
            500: "Internal Server Error",
        }.get(self.status, "Status")
        head = f"HTTP/1.1 {self.status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        return head.encode() + b"Connection: close\r\n\r\n" + payload


Handler = Callable[[Request], "Answer | Writer | None"]


def error(status: int, message: str) -> Answer:
    return Answer(status, {"error": {"code": "", "message": message}})


class HostileService:
    """The service, with ``override(endpoint, handler)`` to make one endpoint hostile."""

    def __init__(self, entities: int = 30, fields: int = 3) -> None:
        self.entities = [
            {
                "Name": f"Entity{i}",
                "PublicEntityName": f"Public{i}",
                "PublicCollectionName": f"Publics{i}",
                "LabelId": f"@ENT{i}",
                "DataServiceEnabled": True,
                "DataManagementEnabled": True,
                "EntityCategory": "Master",
                "IsReadOnly": False,
            }
            for i in range(entities)
        ]
        self.publics = [
            {
                "Name": f"Public{i}",
                "EntitySetName": f"Publics{i}",
                "LabelId": f"@PUB{i}",
                "IsReadOnly": False,
                "ConfigurationEnabled": True,
                "Properties": [
                    {
                        "Name": f"Field{j}",
                        "TypeName": "Edm.String",
                        "DataType": "String",
                        "LabelId": f"@FLD{i}_{j}",
                        "IsKey": j == 0,
                        "IsMandatory": False,
                        "ConfigurationEnabled": True,
                        "AllowEdit": True,
                        "AllowEditOnCreate": True,
                        "IsDimension": False,
                        "DimensionRelation": None,
                        "IsDynamicDimension": False,
                        "DimensionLegalEntityProperty": None,
                        "DimensionTypeProperty": None,
                    }
                    for j in range(fields)
                ],
                "NavigationProperties": [],
                "PropertyGroups": [],
                "Actions": [],
            }
            for i in range(entities)
        ]
        self.enums = [
            {
                "Name": "NoYes",
                "LabelId": "@ENUM",
                "Members": [
                    {"Name": "No", "Value": 0, "LabelId": "@NO", "ConfigurationEnabled": True},
                    {"Name": "Yes", "Value": 1, "LabelId": "@YES", "ConfigurationEnabled": True},
                ],
            }
        ]
        self.overrides: dict[str, Handler] = {}
        self.requests: list[Request] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- what the tests use -------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def override(self, endpoint: str, handler: Handler) -> None:
        """Answer ``endpoint`` (``DataEntities``, ``Labels``, ...) with ``handler``; it may
        return None to answer as usual."""
        self.overrides[endpoint] = handler

    def label_ids(self) -> list[str]:
        ids = [e["LabelId"] for e in self.entities] + [p["LabelId"] for p in self.publics]
        ids += [f["LabelId"] for p in self.publics for f in p["Properties"]]
        ids += [self.enums[0]["LabelId"]] + [m["LabelId"] for m in self.enums[0]["Members"]]
        return sorted({i for i in ids if i})

    def count(self, endpoint: str) -> int:
        return sum(1 for r in self.requests if r.endpoint == endpoint)

    # -- honest answers -----------------------------------------------------------------
    def honest(self, request: Request) -> Answer:
        endpoint = request.endpoint
        if endpoint == "GetInstalledModules":
            return Answer(
                body={
                    "value": [
                        "Name: ApplicationSuite | Version: 10.0.40.1 | "
                        "Module: ApplicationSuite | Publisher: Microsoft"
                    ]
                }
            )
        if endpoint == "GetApplicationVersion":
            return Answer(body={"value": "10.0.40"})
        if endpoint == "GetPlatformBuildVersion":
            return Answer(body={"value": "7.0.7120"})
        if endpoint == "DataEntities":
            return Answer(body={"value": self.entities})
        if endpoint == "PublicEnumerations":
            return Answer(body={"value": self.enums})
        if endpoint == "PublicEntities":
            top = int(request.query.get("$top", len(self.publics)))
            skip = int(request.query.get("$skip", 0))
            return Answer(body={"value": self.publics[skip : skip + top]})
        if endpoint == "Labels" and request.label_id is not None:
            label = request.label_id
            return Answer(body={"Id": label, "Language": "en-US", "Value": f"Text of {label}"})
        return error(404, f"No such resource {request.path}")

    # -- the server ---------------------------------------------------------------------
    def start(self) -> HostileService:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def main() -> None:
                self._server = await asyncio.start_server(self._serve, sock=sock)
                ready.set()
                async with self._server:
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._server.serve_forever()

            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="hostile-service", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the hostile service did not start")
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None and not loop.is_closed():

            def close() -> None:
                server.close()
                for task in asyncio.all_tasks(loop):
                    task.cancel()

            loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            if int(headers.get("content-length", 0) or 0):
                await reader.readexactly(int(headers["content-length"]))
            parts = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            request = Request(method, parts.path, query, headers)
            self.requests.append(request)
            handler = self.overrides.get(request.endpoint)
            answer = handler(request) if handler else None
            if answer is None:
                answer = self.honest(request)
            if isinstance(answer, Answer):
                writer.write(answer.encode())
                await writer.drain()
            else:
                await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


# -- hostile writers ----------------------------------------------------------------------
def raw(data: bytes) -> Writer:
    """Send these bytes, whatever they are, and close."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return write


def drip(interval: float = 0.2) -> Writer:
    """Headers promising a large JSON body, then one byte every ``interval`` seconds, forever
    (until the client goes away)."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        while True:
            await writer.drain()
            await asyncio.sleep(interval)
            writer.write(b" ")

    return write


def endless_chunks(interval: float = 0.05) -> Writer:
    """A chunked body that never ends (a chunk of spaces every ``interval`` seconds)."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n"
        )
        while True:
            writer.write(b"400\r\n" + b" " * 0x400 + b"\r\n")
            await writer.drain()
            await asyncio.sleep(interval)

    return write


def gzip_bomb(megabytes: int) -> Answer:
    """A JSON-typed gzip body that inflates to ``megabytes`` MB of spaces."""
    body = gzip.compress(b"[" + b" " * (megabytes * 2**20) + b"]", compresslevel=9)
    return Answer(
        body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )


def slow(answer: Answer, seconds: float) -> Writer:
    """The honest ``answer``, after ``seconds``."""

    async def write(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)
        writer.write(answer.encode())
        await writer.drain()

    return write
