"""``%d365sync cancel``: cancel a running session."""

from __future__ import annotations

import argparse

from d365sync_nb.notebook.state import state

NAME = "cancel"
SUMMARY = "cancel a running session (the latest running one when no id)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "session_id", nargs="?", help="session id or unique prefix (default: the running one)"
    )


def cancel(session_id: str | None = None, *, display: bool = True) -> bool:
    """Cancel a running session (the latest running one when no id); True if it was running."""
    manager, bridge = state.require()
    if session_id is None and not manager.get_active_sessions():
        if display:
            print("No session is running.")
        return False
    sid = state.resolve_session(session_id, running_only=True)
    stopped = bridge.run(manager.cancel_sync_session(sid))
    if display:
        s = manager.get_sync_session(sid)
        if stopped:
            where = f" in phase {s.current_phase.value}" if s.current_phase else ""
            print(f"Cancelled session {sid}{where} ({s.progress_percent:.0f}% done).")
        else:
            print(f"Session {sid} had already ended ({s.status.value}).")
    return stopped


def run(args: argparse.Namespace) -> None:
    cancel(args.session_id)
