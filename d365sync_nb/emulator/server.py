"""Run the emulator app with uvicorn: in a background thread (:class:`Emulator`) or blocking."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

from .app import EmulatorApp
from .dataset import Dataset
from .faults import DROP_FILTER
from .options import EmulatorError, EmulatorOptionError, EmulatorOptions, coerce_options

__all__ = ["Emulator", "serve"]

_START_TIMEOUT = 30.0


def _loopback_address(host: str) -> str:
    """The loopback IP to bind for ``host``; EmulatorOptionError for anything else."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise EmulatorOptionError(
            f"emulator host must be a loopback address, got {host!r}"
        ) from None
    if not addr.is_loopback:
        raise EmulatorOptionError(f"emulator host must be a loopback address, got {host!r}")
    return str(addr)


def _bind(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening-ready socket bound to ``host:port`` and the matching base URL."""
    ip = _loopback_address(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise EmulatorOptionError(f"port must be from 0 (any free port) to 65535, not {port}")
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets whose proto is TCP,
    # and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise EmulatorError(f"cannot listen on {ip}:{port}: {reason}") from None
    bound_port = sock.getsockname()[1]
    netloc = f"[{ip}]" if family == socket.AF_INET6 else ip
    return sock, f"http://{netloc}:{bound_port}"


def _make_server(app: EmulatorApp) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        http="h11",  # the same server with or without httptools installed (the client uses it)
        timeout_graceful_shutdown=2,
    )
    error_logger = logging.getLogger("uvicorn.error")
    if DROP_FILTER not in error_logger.filters:
        error_logger.addFilter(DROP_FILTER)
    return uvicorn.Server(config)


class Emulator:
    """The emulator served from a daemon thread on a loopback port.

    ``with Emulator(scale="small") as base_url: ...`` yields ``http://127.0.0.1:<port>``.
    """

    def __init__(
        self,
        scale: str = "small",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **option_overrides: Any,
    ) -> None:
        _loopback_address(host)
        options = EmulatorOptions(**coerce_options({"scale": scale, **option_overrides}))
        self._app = EmulatorApp(options)
        self.host = host
        self.port = port
        self.base_url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> str:
        """Start serving (idempotent); returns the base URL once connections are accepted."""
        if self._thread is not None and self._thread.is_alive():
            assert self.base_url is not None
            return self.base_url
        sock, base_url = _bind(self.host, self.port)
        server = _make_server(self._app)
        self._error = None
        thread = threading.Thread(
            target=self._run,
            args=(server, sock),
            daemon=True,
            name=f"d365sync-emulator-{sock.getsockname()[1]}",
        )
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"emulator failed to start: {self._error!r}")
            time.sleep(0.002)
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            pass  # the listener accepts connections
        self.port = sock.getsockname()[1]
        self.base_url = base_url
        return base_url

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            loop.close()

    def stop(self) -> None:
        """Shut down cleanly and join the server thread."""
        server, thread, sock = self._server, self._thread, self._sock
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout=5)
        if sock is not None:
            sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- control ---------------------------------------------------------------------------------
    @property
    def options(self) -> EmulatorOptions:
        """Current options (mutated in place by :meth:`configure`)."""
        return self._app.options

    @property
    def app(self) -> EmulatorApp:
        """The ASGI app being served."""
        return self._app

    @property
    def dataset(self) -> Dataset:
        """The dataset currently served (shared and pre-serialized: treat as read-only)."""
        return self._app.dataset

    def configure(self, **changes: Any) -> EmulatorOptions:
        """Change options at runtime (e.g. ``version=2``, ``token="new"``, ``fault_rate=0.1``)."""
        return self._app.configure(**changes)

    def next_release(self) -> EmulatorOptions:
        """Move the environment to its next release now (as ``POST /_emulator/release``)."""
        return self._app.next_release()

    def stats(self) -> dict[str, Any]:
        """Request counters, as ``GET /_emulator/stats`` returns them."""
        return self._app.stats()

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log."""
        self._app.reset_stats()

    def request_log(self) -> list[tuple[float, str]]:
        """(start time.time(), endpoint) for recent service requests."""
        return self._app.request_log()

    def __repr__(self) -> str:
        return f"Emulator(scale={self.options.scale!r}, base_url={self.base_url!r})"


def serve(
    options: EmulatorOptions,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the emulator in the foreground until KeyboardInterrupt (for the CLI)."""
    app = EmulatorApp(options)
    sock, base_url = _bind(host, port)
    server = _make_server(app)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        if server.started and on_ready is not None:
            on_ready(base_url)
        await task

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    finally:
        sock.close()
