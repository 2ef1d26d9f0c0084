"""What the notebook tells when a background sync ends or a watch finds a new version.

Each notice is a line in the dashboard's notices (``%d365sync panel``, CSS class
``.d365sync-dashboard-notices``) and, where JupyterLab renders widgets and ipylab is installed
(the optional extra ``jupyter``), a JupyterLab notification (toast): ipylab's
``JupyterFrontEnd`` runs the JupyterLab command ``apputils:notify`` from the kernel.

ipylab's frontend model answers ("lab_ready") once JupyterLab has built it, so the bridge is made
in the cell that starts the background work (:meth:`Toaster.prepare`), and a toast waits for
that answer at most :data:`READY_TIMEOUT` seconds; a frontend that never answers (no JupyterLab,
no ipylab extension) leaves the notice to the dashboard line. A notice never fails a sync.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from d365sync_nb.automation import Notice, session_notice
from d365sync_nb.models import SyncSession
from d365sync_nb.sync.manager import SyncSessionManager

log = logging.getLogger(__name__)

NOTIFY_COMMAND = "apputils:notify"  # JupyterLab 4's command behind Notification.emit
READY_TIMEOUT = 10.0  # seconds a toast waits for ipylab's frontend model to answer
TOAST_CLOSE_MS = 15_000  # a success or a cancel closes itself; a failure stays until dismissed
TOAST_CHARS = 140  # JupyterLab shows at most this much of a toast's message
KEPT = 20  # notices kept per kernel (the dashboard shows the last few)
SHOWN = 3
TOAST_TYPES = {"sync_failed": "error", "sync_cancelled": "warning"}  # else "success"


@dataclass
class Told:
    """One notice as the notebook told it: its line and whether a toast was asked for."""

    event: str
    text: str
    via: str = "panel"  # "toast" once JupyterLab was asked to show it


def notice_line(notice: Notice) -> str:
    """The notice in one line: title, then its first facts."""
    return " ".join(f"{notice.title}: {'; '.join(notice.lines()[:3])}".split())


def toast_message(notice: Notice) -> str:
    """What fits a toast: the title and the outcome (a failure's error, a new version's
    changes), at most 140 chars."""
    s = notice.session or {}
    if notice.error:
        detail = notice.error
    elif notice.changes:
        detail = f"version {notice.global_version_id}: {notice.changes['summary']}"
    elif s:
        detail = f"session {s['session_id'][:8]}, {s['status']} in {s['duration_seconds']:.0f} s"
    else:
        detail = ""
    text = " ".join(f"{notice.title} · {detail}".split()) if detail else notice.title
    return text if len(text) <= TOAST_CHARS else text[: TOAST_CHARS - 1] + "…"


class Toaster:
    """The kernel's ipylab bridge to JupyterLab's notifications (one per kernel)."""

    def __init__(self) -> None:
        self.app: Any = None
        self.ready = False
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def prepare(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Make ipylab's frontend model now (from a cell, so JupyterLab builds it and answers
        while the work runs); False without ipylab."""
        if self.app is not None:
            return True
        try:
            from ipylab import JupyterFrontEnd
        except ImportError:
            return False
        self._loop = loop
        self.app = JupyterFrontEnd()
        self.app.on_ready(self._on_ready)
        return True

    def _on_ready(self) -> None:
        self.ready = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._ready.set)

    async def show(self, notice: Notice) -> bool:
        """Ask JupyterLab for a toast; False when there is no frontend that answered."""
        if self.app is None:
            return False
        if not self.ready:
            try:
                async with asyncio.timeout(READY_TIMEOUT):
                    await self._ready.wait()
            except TimeoutError:
                return False
        failed = notice.event == "sync_failed"
        self.app.commands.execute(
            NOTIFY_COMMAND,
            {
                "message": toast_message(notice),
                "type": TOAST_TYPES.get(notice.event, "success"),
                "options": {"autoClose": False if failed else TOAST_CLOSE_MS},
            },
        )
        return True

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
        self.app, self.ready = None, False
        self._ready = asyncio.Event()


class Notices:
    """The kernel's notices: the last :data:`KEPT` lines, the toaster, and who listens (the
    dashboard repaints its line)."""

    def __init__(self) -> None:
        self.told: deque[Told] = deque(maxlen=KEPT)
        self.toaster = Toaster()
        self.listeners: list[Callable[[list[Told]], None]] = []

    def recent(self, count: int = SHOWN) -> list[Told]:
        return list(self.told)[-count:]

    async def tell(self, notice: Notice, *, toast: bool = True) -> Told:
        """Add the notice's line (listeners repaint), then ask for a toast if ``toast``."""
        told = Told(notice.event, notice_line(notice))
        self.told.append(told)
        self._changed()
        if toast:
            try:
                shown = await self.toaster.show(notice)
            except Exception as exc:  # the frontend went away: the line stays
                log.warning("notebook: no JupyterLab notification (%s)", exc)
                shown = False
            if shown:
                told.via = "toast"
                self._changed()
        return told

    async def follow(self, manager: SyncSessionManager, session_id: str) -> Told | None:
        """Wait until a background session ends, then tell how it ended (nothing when its
        connection was closed meanwhile: the user left it)."""
        session: SyncSession = await manager.wait(session_id)
        if manager.closed:
            return None
        return await self.tell(session_notice(manager, session))

    def clear(self) -> None:
        self.told.clear()
        self.toaster.close()
        self._changed()

    def _changed(self) -> None:
        recent = self.recent()
        for listener in list(self.listeners):
            try:
                listener(recent)
            except Exception:
                log.exception("notebook: a notices listener failed")
