"""``%d365sync progress``: a session's live panel or text report; ``--wait`` follows it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from d365sync_nb import render
from d365sync_nb.models import SyncSession
from d365sync_nb.notebook.event_loop import interrupt_calls
from d365sync_nb.notebook.frontend import current_kernel, show
from d365sync_nb.notebook.live_output import SessionOutput
from d365sync_nb.notebook.panel import live_panel
from d365sync_nb.notebook.state import state
from d365sync_nb.notebook.waiting import SessionInterrupted, follow_until

NAME = "progress"
SUMMARY = "show a session's progress or final state (--wait follows it to the end)"
SESSION_ID_HELP = "session id or unique prefix (default: the latest)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", nargs="?", help=SESSION_ID_HELP)
    parser.add_argument("--wait", action="store_true", help="follow the session until it ends")


def progress(
    session_id: str | None = None, *, wait: bool = False, display: bool = True
) -> SyncSession:
    """Show a session's progress (the latest when no id): live panel, or its final state.

    With ``wait``, follow it until it ends; interrupting stops following (it keeps running).
    """
    manager, bridge = state.require()
    sid = state.resolve_session(session_id)
    session = manager.get_sync_session(sid)
    widgets_on = display and state.use_widgets()
    panel = live_panel(state.panels, manager, bridge, sid) if widgets_on else None
    if panel is not None:
        show(panel)
    elif display and not wait and session.is_running and current_kernel() is not None:
        show(SessionOutput(manager, bridge, sid))  # its final state once it ends
    elif display and not (wait and session.is_running):
        print(render.session_report(session))
    if not (wait and session.is_running):
        return session
    stop = asyncio.Event()
    with interrupt_calls(lambda: bridge.call(stop.set)):
        printer = render.ProgressPrinter() if display and not widgets_on else None
        with panel.blocking_wait() if panel is not None else contextlib.nullcontext():
            final = bridge.run(follow_until(manager, sid, printer, stop))
    if final is None:
        raise SessionInterrupted(f"Interrupted: stopped following session {sid} (still running)")
    return final


def run(args: argparse.Namespace) -> None:
    progress(args.session_id, wait=args.wait)
