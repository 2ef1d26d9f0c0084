"""A cell that waits for a session: ``start --wait`` and ``progress --wait``.

The session runs on the notebook's loop; the waiting cell drives that loop (see
:mod:`~d365sync_nb.notebook.event_loop`) with one of these coroutines. In text mode they feed a
:class:`~d365sync_nb.render.ProgressPrinter` themselves, so the lines belong to the waiting cell.
"""

from __future__ import annotations

import asyncio

from d365sync_nb.models import SyncSession
from d365sync_nb.render import ProgressPrinter
from d365sync_nb.sync.manager import SyncSessionManager


class SessionInterrupted(KeyboardInterrupt):
    """The kernel was interrupted while a cell waited for a session."""

    def __init__(self, message: str, session: SyncSession | None = None) -> None:
        super().__init__(message)
        self.session = session

    def __str__(self) -> str:
        return str(self.args[0])


async def follow(
    manager: SyncSessionManager, session_id: str, printer: ProgressPrinter | None
) -> SyncSession:
    """Wait for a session's end (run on the manager's loop), printing its progress when given a
    printer; its final state.

    The printer is fed by this coroutine, not by the manager's callback, so its lines belong to
    the cell that is waiting (ipykernel routes output by the context of the writing task).
    """
    if printer is None:
        return await manager.wait(session_id)
    session = manager.get_sync_session(session_id)
    if not session.is_running:
        printer.update(session)
        return session
    queue: asyncio.Queue[SyncSession] = asyncio.Queue()
    manager.add_progress_callback(session_id, queue.put_nowait)
    try:
        printer.update(session.model_copy(deep=True))
        waiter = asyncio.ensure_future(manager.wait(session_id))
        while not waiter.done():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                printer.update(getter.result())
            else:
                getter.cancel()
        final = waiter.result()
        printer.update(final)
        return final
    finally:
        manager.remove_progress_callback(session_id, queue.put_nowait)


async def follow_until(
    manager: SyncSessionManager,
    session_id: str,
    printer: ProgressPrinter | None,
    stop: asyncio.Event,
) -> SyncSession | None:
    """:func:`follow`, or None as soon as ``stop`` is set (the session keeps running)."""
    waiter = asyncio.ensure_future(follow(manager, session_id, printer))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if waiter.done():
        return waiter.result()
    waiter.cancel()
    return None
