"""``%d365sync start``: start a sync session and show it live (widget panel, or text).

In a Jupyter kernel the session is a task on the kernel's loop, so it keeps running between
cells; with ``--wait`` the cell drives that loop until the session ends. A session left running
in the background tells how it ended (completed, failed with its error, cancelled): a JupyterLab
notification through ipylab, and a line in ``%d365sync panel`` (:mod:`..notices`); ``--no-notify``
or ``%config D365Sync.notify_background = False`` turns that off.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from d365sync_nb.models import SyncSession, SyncStrategy
from d365sync_nb.notebook.config import D365Sync
from d365sync_nb.notebook.event_loop import LoopBridge, interrupt_calls
from d365sync_nb.notebook.frontend import current_kernel, show
from d365sync_nb.notebook.live_output import SessionOutput
from d365sync_nb.notebook.panel import live_panel
from d365sync_nb.notebook.state import state
from d365sync_nb.notebook.waiting import SessionInterrupted, follow
from d365sync_nb.operations import sync as sync_operation
from d365sync_nb.render import ProgressPrinter
from d365sync_nb.sync.manager import SyncSessionManager

NAME = "start"
SUMMARY = "start a sync session and show its live panel (--wait blocks until it ends)"
FOLLOW_HINT = "Follow it with %d365sync progress [--wait]; stop it with %d365sync cancel."
INITIATED_BY = "notebook"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for arg in sync_operation.ARGS:
        arg.add_to(parser)
    parser.add_argument("--wait", action="store_true", help="block until the session ends")
    parser.add_argument(
        "--no-notify",
        dest="notify",
        action="store_false",
        default=None,
        help="no JupyterLab notification when the background session ends",
    )


def start(
    strategy: str | None = None,
    version: int | str | None = None,
    *,
    force: bool = False,
    wait: bool = False,
    display: bool = True,
    languages: str | list[str] | None = None,
    notify: bool | None = None,
) -> SyncSession | None:
    """Start a sync session and show its live panel (text where widgets cannot render).

    Returns the session (its final state with ``wait``), or None when already up to date.
    ``languages`` (``"en-us,de"`` or a list): the languages to sync labels in.
    ``notify`` (default ``D365Sync.notify_background``): without ``wait``, tell how the session
    ended (a JupyterLab notification, and a line in ``%d365sync panel``).
    With ``wait``, interrupting the kernel cancels the session, then raises
    :class:`SessionInterrupted`.
    """
    manager, bridge = state.require()
    parsed = SyncStrategy.parse(strategy or D365Sync.instance().default_strategy)
    widgets_on = display and state.use_widgets()
    started: dict[str, Any] = {"session_id": None, "interrupted": False}

    def cancel_requested() -> None:
        if started["session_id"] is not None:
            bridge.spawn(manager.cancel_sync_session(started["session_id"]))

    def on_interrupt() -> None:
        started["interrupted"] = True
        bridge.call(cancel_requested)

    with interrupt_calls(on_interrupt) if wait else contextlib.nullcontext():
        result = bridge.run(
            manager.start(
                version, parsed, initiated_by=INITIATED_BY, force=force, languages=languages
            )
        )
        if result.session_id is None:
            if started["interrupted"]:
                raise SessionInterrupted("Interrupted before a session started")
            if display:
                print(
                    f"{result.up_to_date_sentence}; nothing to do. "
                    "Add --force (force=True) to sync it again."
                )
            return None
        sid = started["session_id"] = result.session_id
        if started["interrupted"]:
            bridge.call(cancel_requested)
        panel = live_panel(state.panels, manager, bridge, sid) if widgets_on else None
        if panel is not None:
            show(panel)
        elif display:
            print(f"{result.message} (session {sid})")
            if not wait and current_kernel() is not None:
                show(SessionOutput(manager, bridge, sid))  # its final state once it ends
        if not wait:
            if notify if notify is not None else D365Sync.instance().notify_background:
                notify_when_done(manager, bridge, sid)
            if display and not widgets_on:
                print(FOLLOW_HINT)
            return manager.get_sync_session(sid)
        printer = ProgressPrinter() if display and not widgets_on else None
        with panel.blocking_wait() if panel is not None else contextlib.nullcontext():
            final = bridge.run(follow(manager, sid, printer))
    if started["interrupted"]:
        raise SessionInterrupted(f"Interrupted: session {sid} was {final.status.value}", final)
    return final


def notify_when_done(manager: SyncSessionManager, bridge: LoopBridge, session_id: str) -> None:
    """Tell how the background session ends (see the module); the toast's bridge is made now,
    in this cell, where a JupyterLab renders widgets."""
    if state.use_widgets():
        state.notices.toaster.prepare(bridge.loop)
    bridge.submit(state.notices.follow(manager, session_id))


def run(args: argparse.Namespace) -> None:
    start(
        args.strategy,
        args.version,
        force=args.force,
        wait=args.wait,
        languages=args.languages,
        notify=args.notify,
    )
