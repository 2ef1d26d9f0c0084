"""Single-item GETs (a label) over kept-alive HTTP/1.1 connections, parsed by httptools.

A label is a GET of a few hundred bytes answered by a few hundred bytes, 26,000 of them in a
realistic sync. aiohttp's request machinery (request and response objects, the connector, its
timers and trace hooks) took ~150 us of CPU for each; here the request is written as bytes
and the answer parsed by httptools (llhttp, the parser uvicorn uses): ~65 us (the same labels
against the emulator, ``benchmarks/label_transports.py``). Collections, POSTs and the
streamed PublicEntities stay on aiohttp.

One request per connection at a time (no pipelining); a connection is kept while the service
keeps it alive, and idle ones are reused most recent first. A connection whose exchange did not
end cleanly (an error, a cancel, a deadline) is closed, never reused. Errors carry the kind the
request log records: ``connect``, ``dropped``, ``malformed``, ``garbled`` or ``too_large``.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from typing import Any
from urllib.parse import urlsplit

import httptools

CONNECT_TIMEOUT = 15.0
MAX_HEADER_BYTES = 64 * 1024  # an answer's status line and headers (aiohttp: 8 KB per field)


class WireError(Exception):
    """An exchange without a usable answer; ``kind`` is what the request log records."""

    kind = "dropped"


class ConnectFailed(WireError):
    kind = "connect"


class Dropped(WireError):
    kind = "dropped"


class Malformed(WireError):
    kind = "malformed"


class Garbled(WireError):
    kind = "garbled"


class AnswerTooLarge(WireError):
    """A decoded body past the bound (not retried; aiohttp's path raises it too)."""

    kind = "too_large"


class Headers(dict[str, str]):
    """An answer's headers by lower-case name (a repeated one joined with ``, ``, as httpx
    reads it); ``get`` takes any casing."""

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)


class WireAnswer:
    """Status line, headers and decoded body of one answer (httpx.Response's names)."""

    __slots__ = ("body", "headers", "reason_phrase", "status_code")

    def __init__(self, status: int, reason: str, headers: Headers, body: bytearray) -> None:
        self.status_code, self.reason_phrase = status, reason
        self.headers, self.body = headers, body


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one exchange at a time."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep = False  # whether the last answer left the connection reusable
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[WireAnswer] | None = None
        self._reset()

    def _reset(self) -> None:
        self._raw: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._reason = b""
        self._body = bytearray()
        self._headers_done = False

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is not in a known state
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Malformed("the service asked to switch protocols"))
        except httptools.HttpParserError as exc:
            mine = exc.__context__  # raised by a callback below (a bound passed)
            self._fail(mine if isinstance(mine, WireError) else Malformed(f"not HTTP: {exc}"))

    def eof_received(self) -> bool | None:
        self.closed = True  # at once: not taken for a request before connection_lost runs
        return None  # (the transport closes itself)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and self._until_close():
            self.on_message_complete()  # an answer delimited by the end of the connection
            return
        reason = f": {exc}" if exc else ""
        self._fail(Dropped(f"the service closed the connection before the answer's end{reason}"))

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._waiter is None or self._waiter.done():  # more after the answer: not HTTP/1.1
            raise Malformed("the service sent more than one answer to one request")

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise Malformed(f"the answer's headers are larger than {MAX_HEADER_BYTES} bytes")
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > self.max_body:
            raise AnswerTooLarge()

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:  # an interim answer (103 Early Hints): the real one follows
            self._reset()
            return
        headers = Headers()
        for name, value in self._raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        try:
            body = _decoded(headers.get("content-encoding"), self._body, self.max_body)
        except WireError as exc:
            self._fail(exc)
            return
        self.keep = not self.closed and parser.should_keep_alive()
        reason = self._reason.decode("latin-1")
        self._reset()
        waiter.set_result(WireAnswer(status, reason, headers, body))

    # -- the exchange ----------------------------------------------------------------------
    def _until_close(self) -> bool:
        """Whether the answer has neither a length nor chunks: it ends with the connection."""
        names = {name.lower() for name, _ in self._raw}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def exchange(self, request: bytes) -> asyncio.Future[WireAnswer]:
        """Write one request; the future is its answer."""
        assert self.transport is not None
        self.keep = False
        self._reset()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _decoded(encoding: str | None, body: bytearray, limit: int) -> bytearray:
    """The body without its content coding (gzip or deflate, as the request accepts), refused
    past ``limit`` bytes decoded (a bomb is never inflated whole)."""
    if not encoding or encoding.lower() == "identity" or not body:
        return body
    coding = encoding.lower().strip()
    if coding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send it
        inflater = zlib.decompressobj(zlib.MAX_WBITS if body[0] & 0x0F == 8 else -zlib.MAX_WBITS)
    else:
        return body  # a coding not asked for is passed on as sent (as aiohttp does)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Garbled(f"the {coding} body cannot be decoded ({exc})") from None
    if len(out) > limit:
        raise AnswerTooLarge()
    if not inflater.eof:
        raise Garbled(f"the {coding} body is cut short")
    return bytearray(out)


class SingleItems:
    """Kept-alive connections to one service for single-item GETs under its base URL."""

    def __init__(self, base_url: str, headers: dict[str, str], max_body: int) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        default = (self.https and self.port == 443) or (not self.https and self.port == 80)
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        host_header = netloc if default else f"{netloc}:{self.port}"
        self.prefix = base_url.rstrip("/") + "/"  # URLs this sends (the rest: aiohttp)
        self._path = (parts.path.rstrip("/") + "/").encode("ascii")
        constant = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = f" HTTP/1.1\r\nHost: {host_header}\r\n{constant}".encode("latin-1")
        self.max_body = max_body
        self._idle: list[_Connection] = []
        self._ssl: ssl.SSLContext | None = None
        self.connections = 0  # connections opened (kept alive: far fewer than requests)

    def serves(self, url: str) -> bool:
        """Whether ``url`` is a plain path under the base URL (no query)."""
        return url.startswith(self.prefix) and "?" not in url and "#" not in url

    async def get(self, url: str, headers: dict[str, str]) -> WireAnswer:
        """GET ``url`` (:meth:`serves` it) with these headers besides the constant ones."""
        target = url[len(self.prefix) :]
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = b"GET " + self._path + target.encode("ascii") + self._head
        request += extra.encode("latin-1") + b"\r\n"
        conn = self._take()
        if conn is None:
            conn = await self._connect()
        try:
            answer = await conn.exchange(request)
        except BaseException:
            conn.close()  # an error, a cancel or a deadline: not in a known state
            raise
        if conn.keep and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def _take(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()  # the most recent: the least likely to have been closed idle
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if self.https:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
                self._ssl.set_alpn_protocols(["http/1.1"])
            context = self._ssl
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self.max_body),
                    self.host,
                    self.port,
                    ssl=context,
                    server_hostname=self.host if context else None,
                )
        except TimeoutError:
            where = f"{self.host}:{self.port}"
            raise ConnectFailed(f"cannot connect to {where} within {CONNECT_TIMEOUT:g} s") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        self.connections += 1
        return conn

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
