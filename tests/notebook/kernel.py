"""A real Jupyter kernel, driven over jupyter_client: run code, collect its iopub messages,
poll an expression, follow the panel's Cancel button."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyter_client import BlockingKernelClient, KernelManager

from tests.support import poll


@dataclass
class Reply:
    status: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # every iopub message seen

    def stream(self, name: str | None = None) -> str:
        return "".join(
            o["text"] for o in self.outputs if o["type"] == "stream" and name in (None, o["name"])
        )

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.outputs if o["type"] == kind]


class Kernel:
    """A jupyter_client connection to a live ipykernel; collects every iopub message."""

    def __init__(self, km: KernelManager, kc: BlockingKernelClient) -> None:
        self.km = km
        self.kc = kc
        self.log: list[dict[str, Any]] = []

    def send(self, code: str) -> str:
        return self.kc.execute(code)

    def collect(self, msg_id: str, timeout: float = 60.0, until: Any = None) -> Reply:
        """iopub messages of one request until idle (or until ``until(msg)`` holds)."""
        reply = Reply(status="")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"kernel request {msg_id} did not finish in {timeout:g}s")
            msg = self.kc.get_iopub_msg(timeout=remaining)
            self.log.append(msg)
            reply.messages.append(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                reply.outputs.append({"type": "stream", "name": content["name"], **content})
            elif kind in ("display_data", "execute_result", "error"):
                reply.outputs.append({"type": kind, **content})
            if until is not None and until(msg):
                return reply
            if kind == "status" and content["execution_state"] == "idle":
                break
        shell_reply = self.kc.get_shell_msg(timeout=10)
        assert shell_reply["parent_header"]["msg_id"] == msg_id
        reply.status = shell_reply["content"]["status"]
        return reply

    def run(self, code: str, timeout: float = 60.0) -> Reply:
        return self.collect(self.send(code), timeout)

    def value(self, expression: str) -> str:
        """``print(expression)`` in the kernel; its stdout, stripped."""
        reply = self.run(f"print({expression})")
        assert reply.status == "ok", reply.outputs
        return reply.stream("stdout").strip()

    def poll(self, expression: str, expected: Callable[[str], bool], timeout: float = 30.0) -> str:
        """Evaluate until ``expected(value)``; the kernel is idle between polls."""
        return poll(lambda: self.value(expression), expected, timeout=timeout, what=expression)


def drain_shell_replies(kc: BlockingKernelClient) -> None:
    """Drop replies nobody waits for: on a busy machine wait_for_ready() sends kernel_info
    again after a second without an answer, and the late extra reply would be taken for the
    next request's (``assert shell_reply ... == msg_id`` failed in setup)."""
    import queue

    while True:
        try:
            kc.get_shell_msg(timeout=0.5)
        except queue.Empty:
            return


def started_kernel(tmp_path_factory: pytest.TempPathFactory, km: KernelManager) -> Iterator[Kernel]:
    """Start ``km``'s kernel, load the extension, connect it to a demo emulator."""
    km.start_kernel(cwd=str(tmp_path_factory.mktemp("kernel")))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        drain_shell_replies(kc)
        k = Kernel(km, kc)
        cache = tmp_path_factory.mktemp("kernel-cache")
        setup = k.run(
            "%load_ext d365sync_nb\n"
            "import d365sync_nb.notebook as nb\n"
            f"%d365sync connect --demo --latency-ms 10 --cache-dir {cache}"
        )
        assert setup.status == "ok", setup.outputs
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def watch_cancel_button(seen: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An iopub observer that follows the panel's Cancel button: ``seen["button"]`` is its comm
    id, the rest of ``seen`` the state sent for it; returns each message's widget state."""

    def observe(msg: dict[str, Any]) -> dict[str, Any]:
        content = msg["content"]
        state = content.get("data", {}).get("state", {})
        if msg["msg_type"] == "comm_open" and state.get("description") == "Cancel":
            seen["button"] = content["comm_id"]
        if msg["msg_type"] == "comm_msg" and content.get("comm_id") == seen.get("button"):
            seen.update(state)
        return state

    return observe
