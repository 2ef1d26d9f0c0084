"""Shared fixtures: a real emulator over loopback, the hostile service (tests/hostile_service.py)
and managers on real SQLite files (helpers live in tests/support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from d365sync_nb.config import resolve_settings
from d365sync_nb.emulator import Emulator
from d365sync_nb.sync.manager import SyncSessionManager
from tests.hostile_service import HostileService


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(scale="small")
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def service() -> Iterator[HostileService]:
    """The hostile stand-in for the service, honest until a test overrides an endpoint."""
    server = HostileService().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_manager(tmp_path: Path) -> Iterator[Callable[..., SyncSessionManager]]:
    """Build managers on the test's cache dir (closed at teardown)."""
    made: list[SyncSessionManager] = []

    def make(base_url: str, *, cache_dir: Path | None = None, **options: Any) -> SyncSessionManager:
        settings = resolve_settings(
            base_url=base_url,
            cache_dir=cache_dir or tmp_path / "cache",
            concurrency=options.pop("concurrency", 16),
        )
        options.setdefault("client_options", {"backoff_base": 0.02, "backoff_cap": 0.2})
        manager = SyncSessionManager(settings, **options)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.store.close()


@pytest.fixture
def stalled_server():
    """A real server that accepts connections and reads requests, but never answers."""
    import socket
    import threading

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)  # read nothing back, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def html_server():
    """A web server that is not D365: every path answers 404 with an HTML page."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    page = (
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
        + (b"<body><h1>Not Found</h1><p>nginx</p>\n" * 8)
        + b"</body></html>\n"
    )

    class NotD365(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    class Quiet(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that hangs up early is no news here

    server = Quiet(("127.0.0.1", 0), NotD365)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
