"""A real loopback HTTP server that receives webhook posts, for the notification tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SIGNATURE = "sig=Zm9vYmFyc2VjcmV0c2lnbmF0dXJl"  # what a Workflows URL's signature looks like


class Receiver:
    """Records every POST (path and JSON body); answers ``statuses`` in turn, then 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver._lock:
                    receiver.posts.append((self.path, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver._arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        """A webhook URL with a signature in its query, like the real ones."""
        return f"{self.base}/{name}?{SIGNATURE}"

    def bodies(self, name: str) -> list[Any]:
        with self._lock:
            return [body for path, body in self.posts if path.startswith(f"/{name}")]

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        with self._lock:
            if not self._arrived.wait_for(lambda: len(self.posts) >= count, timeout):
                raise AssertionError(f"{len(self.posts)} posts arrived, expected {count}")

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
