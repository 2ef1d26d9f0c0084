"""Where sessions run, and how a synchronous cell waits for a coroutine without stopping them.

- In a Jupyter kernel (ipykernel ≥ 6) the kernel's own asyncio loop runs between cells: sessions
  are tasks on it, so they progress while the kernel is idle. A cell that must block (``connect``,
  ``start --wait``) drives that same loop re-entrantly until its coroutine is done
  (:func:`run_nested`).
- Elsewhere (terminal IPython, scripts, in-process shells) no loop runs between statements, so a
  daemon thread runs one for the whole process and callers block on its futures.

Why not nest-asyncio: ipykernel 7 runs every shell message handler as a task in one shared
``contextvars.Context`` (``_async_in_context``). While a cell blocks inside that context, the
next execute request (JupyterLab's "Run All" sends them all at once) or a comm message becomes a
task step in the *same* context, and running it nested fails with "cannot enter context ... is
already entered": the message is lost and the notebook hangs. :func:`run_nested` runs such a
step in a copy of its context, patches nothing globally, and keeps C tasks. Why not
jupyter-ui-poll: it never steps the kernel's asyncio loop (a sync task freezes while it polls)
and its ``poll()`` does nothing on ipykernel >= 7.1 (measured; see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from contextvars import Context
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class LoopBridge:
    """One asyncio loop that sessions live on, reachable from synchronous code."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, in_kernel: bool) -> None:
        self.loop = loop
        self.in_kernel = in_kernel
        self.thread_id: int | None = None  # the thread the loop runs on
        self._tasks: set[asyncio.Future[Any]] = set()

    def on_loop_thread(self) -> bool:
        return self.thread_id == threading.get_ident()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result; the loop's other tasks keep running."""
        raise NotImplementedError

    def call(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` soon on the loop's thread (safe from any thread, e.g. widget callbacks)."""
        self.loop.call_soon_threadsafe(fn)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Schedule ``coro`` as a task (call on the loop's thread); keep it alive, log failures."""
        task = asyncio.ensure_future(coro, loop=self.loop)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def submit(
        self, coro: Coroutine[Any, Any, Any]
    ) -> asyncio.Future[Any] | concurrent.futures.Future[Any]:
        """Schedule ``coro`` on the loop from any thread: a task (:meth:`spawn`) on the loop's
        thread, else a ``concurrent.futures.Future`` of it."""
        if self.on_loop_thread():
            return self.spawn(coro)
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("d365sync background task failed", exc_info=task.exception())

    def close(self) -> None:
        """Release the loop (the thread loop stops; the kernel's loop is left alone)."""


class KernelLoopBridge(LoopBridge):
    """The Jupyter kernel's running loop, driven re-entrantly to block a cell."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop, in_kernel=True)
        self.thread_id = threading.get_ident()  # built from a cell, on the loop's thread

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self.loop.is_running():
            return self.loop.run_until_complete(coro)
        if not self.on_loop_thread():
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        task = self.loop.create_task(coro)
        try:
            run_nested(self.loop, task)
            return task.result()
        finally:
            if not task.done():  # a second interrupt escaped the nested loop
                task.cancel()


def _entered(context: Context | None) -> bool:
    """Is this context being run somewhere up the stack (so it cannot be entered again)?"""
    if context is None:
        return False
    try:
        context.run(int)
    except RuntimeError:
        return True
    return False


def run_nested(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
    """Run ``loop`` (already running, from one of its callbacks) until ``future`` is done.

    The current task is set aside while nested callbacks run (they are other tasks' steps). A
    callback whose context is already entered up the stack (ipykernel 7 runs every shell
    message handler in one shared Context) runs in a copy of that context: a queued
    execute_request then waits on the kernel's lock until the cell returns (Run All stays in
    order), and from ipykernel 7.4 a comm message (a widget click) is handled at once.
    """
    run_once = getattr(loop, "_run_once", None)
    ready: deque[asyncio.Handle] | None = getattr(loop, "_ready", None)
    if run_once is None or ready is None:
        raise RuntimeError(f"cannot block inside a running {type(loop).__name__}")
    outer = asyncio.current_task(loop)
    if outer is not None:
        asyncio.tasks._leave_task(loop, outer)
    # The outer _run_once counted its batch of ready handles before running the one that got
    # here; the nested passes below may run the rest of that batch (a background task's timer,
    # a watch's sleep), and the outer pass would then pop from an empty queue and kill the
    # kernel. As many no-op handles as were waiting keep its count whole.
    waiting = len(ready)
    try:
        while not future.done():
            for handle in list(ready):  # a snapshot: other threads may append meanwhile
                context = getattr(handle, "_context", None)
                if context is not None and _entered(context):
                    handle._context = context.copy()  # type: ignore[attr-defined]
            run_once()
    finally:
        ready.extendleft(asyncio.Handle(_nothing, (), loop) for _ in range(waiting))
        if outer is not None:
            asyncio.tasks._enter_task(loop, outer)


def _nothing() -> None:
    """A ready handle that does nothing (see :func:`run_nested`)."""


def clicks_reach_a_waiting_cell() -> bool:
    """Can a widget click (a comm message) be handled while a cell blocks in :func:`run_nested`?
    ipykernel >= 7.4 dispatches comm messages while a cell holds the kernel's lock; older
    kernels queue them until the cell returns."""
    try:
        from ipykernel import version_info
    except ImportError:
        return False
    return tuple(version_info[:2]) >= (7, 4)


class ThreadLoopBridge(LoopBridge):
    """A loop running forever on a daemon thread (no kernel loop to live on)."""

    def __init__(self) -> None:
        loop = asyncio.new_event_loop()
        super().__init__(loop, in_kernel=False)
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="d365sync-notebook-loop", daemon=True
        )
        self._thread.start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        self.thread_id = threading.get_ident()
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.on_loop_thread():
            coro.close()
            raise RuntimeError("cannot block the d365sync loop thread on itself")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


def make_bridge(in_kernel: bool) -> LoopBridge:
    """The kernel's loop when called from a kernel cell, else a private loop thread."""
    if in_kernel:
        with contextlib.suppress(RuntimeError):
            return KernelLoopBridge(asyncio.get_running_loop())
    return ThreadLoopBridge()


@contextlib.contextmanager
def interrupt_calls(callback: Callable[[], None]) -> Iterator[None]:
    """While inside, the first SIGINT (Ctrl-C, kernel interrupt) calls ``callback`` instead of
    raising KeyboardInterrupt mid-task; a second one raises as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = 0

    def handler(signum: int, frame: Any) -> None:
        nonlocal count
        count += 1
        if count > 1:
            raise KeyboardInterrupt
        callback()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
