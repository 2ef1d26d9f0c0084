"""``start``, ``progress``, ``cancel``: sessions shown live (widget panel or text).

In a Jupyter kernel sessions are tasks on the kernel's loop, so they keep running between cells;
a cell that waits drives that loop until the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from d365sync_nb import render
from d365sync_nb.models import SyncSession, SyncStrategy
from d365sync_nb.notebook.context import context
from d365sync_nb.notebook.event_loop import interrupt_calls
from d365sync_nb.notebook.panel import SessionPanel
from d365sync_nb.notebook.text_progress import TextProgress, follow
from d365sync_nb.sync.manager import SyncSessionManager

FOLLOW_HINT = "Follow it with %d365sync progress [--wait]; stop it with %d365sync cancel."
INITIATED_BY = "notebook"


class SessionInterrupted(KeyboardInterrupt):
    """The kernel was interrupted while a cell waited for a session."""

    def __init__(self, message: str, session: SyncSession | None = None) -> None:
        super().__init__(message)
        self.session = session

    def __str__(self) -> str:
        return str(self.args[0])


def _show(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def _wait_or_stop(
    manager: SyncSessionManager,
    session_id: str,
    progress: TextProgress | None,
    stop: asyncio.Event,
) -> Coroutine[Any, Any, SyncSession | None]:
    """Wait for the session's end (following it in text); None when ``stop`` is set first."""

    async def run() -> SyncSession | None:
        waiter = asyncio.ensure_future(
            follow(manager, session_id, progress) if progress else manager.wait(session_id)
        )
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if waiter.done():
            return waiter.result()
        waiter.cancel()
        return None

    return run()


def start(
    strategy: str | None = None,
    version: int | str | None = None,
    *,
    force: bool = False,
    wait: bool = False,
    display: bool = True,
) -> SyncSession | None:
    """Start a sync session and show its live panel (text where widgets cannot render).

    Returns the session (its final state with ``wait``), or None when already up to date.
    With ``wait``, interrupting the kernel cancels the session, then raises
    :class:`SessionInterrupted`.
    """
    manager, bridge = context.require()
    parsed = SyncStrategy.parse(strategy or context.options.default_strategy)
    widgets_on = display and context.use_widgets()
    state: dict[str, Any] = {"session_id": None, "interrupted": False}

    def cancel_requested() -> None:
        if state["session_id"] is not None:
            bridge.spawn(manager.cancel_sync_session(state["session_id"]))

    def on_interrupt() -> None:
        state["interrupted"] = True
        bridge.call(cancel_requested)

    with interrupt_calls(on_interrupt) if wait else contextlib.nullcontext():
        result = bridge.run(manager.start(version, parsed, initiated_by=INITIATED_BY, force=force))
        if result.session_id is None:
            if state["interrupted"]:
                raise SessionInterrupted("Interrupted before a session started")
            if display:
                print(
                    f"Version {result.global_version_id} is already up to date for "
                    f"'{result.strategy}' (synced {result.synced_at}); nothing to do. "
                    "Add --force (force=True) to sync it again."
                )
            return None
        sid = state["session_id"] = result.session_id
        if state["interrupted"]:
            bridge.call(cancel_requested)
        if widgets_on:
            _show(context.panel_for(sid))
        elif display:
            print(f"{result.message} (session {sid})")
        if not wait:
            if display and not widgets_on:
                print(FOLLOW_HINT)
            return manager.get_sync_session(sid)
        text = TextProgress() if display and not widgets_on else None
        final = bridge.run(follow(manager, sid, text) if text else manager.wait(sid))
    if state["interrupted"]:
        raise SessionInterrupted(f"Interrupted: session {sid} was {final.status.value}", final)
    return final


def progress(
    session_id: str | None = None, *, wait: bool = False, display: bool = True
) -> SyncSession:
    """Show a session's progress (the latest when no id): live panel, or its final state.

    With ``wait``, follow it until it ends; interrupting stops following (it keeps running).
    """
    manager, bridge = context.require()
    sid = context.resolve_session(session_id)
    session = manager.get_sync_session(sid)
    widgets_on = display and context.use_widgets()
    if widgets_on:
        _show(context.panel_for(sid))
    elif display and not (wait and session.is_running):
        print(TextReport(session))
    if not (wait and session.is_running):
        return session
    stop = asyncio.Event()
    with interrupt_calls(lambda: bridge.call(stop.set)):
        text = TextProgress() if display and not widgets_on else None
        final = bridge.run(_wait_or_stop(manager, sid, text, stop))
    if final is None:
        raise SessionInterrupted(f"Interrupted: stopped following session {sid} (still running)")
    return final


def cancel(session_id: str | None = None, *, display: bool = True) -> bool:
    """Cancel a running session (the latest running one when no id); True if it was running."""
    manager, bridge = context.require()
    if session_id is None and not manager.get_active_sessions():
        if display:
            print("No session is running.")
        return False
    sid = context.resolve_session(session_id, running_only=True)
    stopped = bridge.run(manager.cancel_sync_session(sid))
    if display:
        s = manager.get_sync_session(sid)
        if stopped:
            where = f" in phase {s.current_phase.value}" if s.current_phase else ""
            print(f"Cancelled session {sid}{where} ({s.progress_percent:.0f}% done).")
        else:
            print(f"Session {sid} had already ended ({s.status.value}).")
    return stopped


def get_session(session_id: str | None = None) -> SyncSession:
    """A session's current state (the latest session when no id), without displaying it."""
    manager, _ = context.require()
    return manager.get_sync_session(context.resolve_session(session_id))


def get_panel(session_id: str | None = None) -> SessionPanel:
    """The live widget panel of a session (the latest when no id)."""
    return context.panel_for(context.resolve_session(session_id))


class TextReport:
    """A session's text report (what ``progress`` prints without widgets)."""

    def __init__(self, session: SyncSession) -> None:
        self.session = session

    def __str__(self) -> str:
        return render.session_report(self.session)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))
