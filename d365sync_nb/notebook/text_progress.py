"""Text progress for frontends without widgets (terminal IPython, nbconvert, nbval).

Output is deterministic for a given session outcome: one line per phase, printed in phase order
once the phase has ended, then the outcome. On a terminal a status line is rewritten in between.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from d365sync_nb import render
from d365sync_nb.models import PhaseStatus, SyncSession
from d365sync_nb.sync.manager import SyncSessionManager

ENDED = frozenset(
    {PhaseStatus.COMPLETED, PhaseStatus.FAILED, PhaseStatus.CANCELLED, PhaseStatus.SKIPPED}
)


def outcome_lines(session: SyncSession) -> list[str]:
    """The report's header, note, counts and error (the phase lines are printed live)."""
    lines = render.session_report(session).split("\n")
    del lines[1 : 1 + len(session.phases)]
    if any(p.error for p in session.phases.values()):
        lines = [line for line in lines if not line.startswith("Error: ")]
    return lines


class TextProgress:
    """Feed it snapshots of one session; it writes what has newly ended."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._printed = 0
        self._finished = False
        self._live = False

    def update(self, session: SyncSession) -> None:
        if self._finished:
            return
        phases = list(session.phases.values())
        lines = render.phase_lines(session)
        final = session.status.is_final
        out: list[str] = []
        while self._printed < len(phases) and (final or phases[self._printed].status in ENDED):
            out.append(lines[self._printed])
            self._printed += 1
        if final:
            out.extend(outcome_lines(session))
            self._finished = True
        self._write(out, None if final else render.status_line(session))

    def _write(self, lines: list[str], live: str | None) -> None:
        text = ""
        if self.tty and self._live and (lines or live is None):
            text += "\r\033[K"
            self._live = False
        text += "".join(line + "\n" for line in lines)
        if self.tty and live is not None:
            text += "\r\033[K" + live
            self._live = True
        if text:
            self.stream.write(text)
            self.stream.flush()


async def follow(
    manager: SyncSessionManager, session_id: str, progress: TextProgress
) -> SyncSession:
    """Write a session's progress until it ends (run on the manager's loop); its final state.

    Lines are written by this coroutine, not by the manager's callback, so they belong to the
    cell that is waiting (ipykernel routes output by the context of the writing task).
    """
    session = manager.get_sync_session(session_id)
    if not session.is_running:
        progress.update(session)
        return session
    queue: asyncio.Queue[SyncSession] = asyncio.Queue()
    manager.add_progress_callback(session_id, queue.put_nowait)
    try:
        progress.update(session.model_copy(deep=True))
        waiter = asyncio.ensure_future(manager.wait(session_id))
        while not waiter.done():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                progress.update(getter.result())
            else:
                getter.cancel()
        final = waiter.result()
        progress.update(final)
        return final
    finally:
        manager.remove_progress_callback(session_id, queue.put_nowait)
