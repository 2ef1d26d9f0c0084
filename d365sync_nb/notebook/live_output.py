"""Outputs that stay true when the notebook is saved: shown with a display id, their static
renderings (``text/html`` and ``text/plain``, beside a widget view or alone) republished as
their session moves, so the saved file holds the last state, not the first.

A viewer without a widget manager (GitHub, nbviewer, ``nbconvert``) drops the widget view and
shows the static part; JupyterLab keeps rendering the widget. Republishing goes two ways:

- from the session's snapshots (:meth:`LiveOutput.refresh`): at once when a phase or the
  session changes status, else at most every :data:`STATIC_INTERVAL` seconds (a JupyterLab
  output re-creates its widget view on every update, so these are rarer than the bars');
- after every cell (IPython's ``post_run_cell``, :func:`refresh_all`): an executing client
  (nbclient, papermill) only reads messages that belong to the cell it runs, so the output of
  a session that ended while a later cell ran is brought up to date from that cell.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections.abc import Callable
from typing import Any

from d365sync_nb.models import SyncSession
from d365sync_nb.notebook import frontend

STATIC_INTERVAL = 1.0  # seconds between two republications within a phase
_serial = itertools.count(1)
_live: weakref.WeakSet[LiveOutput] = weakref.WeakSet()
_hooked: set[int] = set()  # ids of the shells whose post_run_cell we hooked


def status_key(session: SyncSession) -> tuple[str, ...]:
    """What, when it changes, is republished at once: the session's and its phases' status."""
    return (session.status.value, *(p.status.value for p in session.phases.values()))


class LiveOutput:
    """One output kept current through its display id.

    ``bundle()`` gives the whole mimebundle to show now (a widget view and the static
    renderings of the current state); :meth:`show` displays it, :meth:`refresh` republishes it.
    """

    def __init__(self, name: str, bundle: Callable[[], dict[str, Any]]) -> None:
        self.display_id = f"d365sync-{name}-{next(_serial)}"
        self.bundle = bundle
        self.displayed = False
        self._published: dict[str, Any] | None = None  # the last bundle sent
        self._sent_from_cell: dict[str, Any] | None = None  # ... from a cell (show, post_run_cell)
        self._key: object = None
        self._at = 0.0

    def show(self) -> None:
        """Display the output (again: every display of it follows the same updates)."""
        from IPython.display import display

        data = self.bundle()
        display(data, raw=True, display_id=self.display_id)
        self.displayed, self._published, self._at = True, data, time.monotonic()
        self._sent_from_cell = data
        _live.add(self)
        _hook_cells()

    def refresh(self, key: object = None) -> bool:
        """Republish the current state when it changed: at once when ``key`` changed, else at
        most every :data:`STATIC_INTERVAL` seconds. True if sent."""
        if not self.displayed:
            return False
        now = time.monotonic()
        if key == self._key and now - self._at < STATIC_INTERVAL:
            return False
        self._key = key
        data = self.bundle()
        if data == self._published:
            return False
        self._send(data)
        self._at = now
        return True

    def refresh_from_cell(self) -> bool:
        """Republish what changed since the last cell sent it (see the module). True if sent."""
        if not self.displayed:
            return False
        data = self.bundle()
        if data == self._sent_from_cell:
            return False
        self._send(data)
        self._sent_from_cell = data
        return True

    def forget(self) -> None:
        """Stop republishing (the output keeps what it last showed)."""
        self.displayed = False
        _live.discard(self)

    def _send(self, data: dict[str, Any]) -> None:
        from IPython.display import update_display

        update_display(data, raw=True, display_id=self.display_id)
        self._published = data


def refresh_all(*_: Any) -> None:
    """Republish every live output whose state changed (IPython's ``post_run_cell``)."""
    for output in list(_live):
        try:
            output.refresh_from_cell()
        except Exception:  # a display that cannot refresh must not break the user's cell
            continue


def _hook_cells() -> None:
    shell = frontend.current_shell()
    if shell is None or id(shell) in _hooked:
        return
    shell.events.register("post_run_cell", refresh_all)
    _hooked.add(id(shell))


class SessionOutput:
    """A session shown without widgets (nbclient, papermill, a kernel whose frontend renders
    none): its static report, kept current as it moves and once it ends."""

    def __init__(self, manager: Any, bridge: Any, session_id: str) -> None:
        self.manager = manager
        self.session_id = session_id
        self.session: SyncSession = manager.get_sync_session(session_id)
        self.output = LiveOutput(f"session-{session_id}", self.static_bundle)
        self.bound = False
        if self.session.is_running:
            if bridge.on_loop_thread():
                self._bind()
            else:
                bridge.call(self._bind)

    def _bind(self) -> None:
        session = self.manager.get_sync_session(self.session_id)
        self.session = session
        if session.is_running:
            self.manager.add_progress_callback(self.session_id, self.on_snapshot)
            self.bound = True

    def on_snapshot(self, session: SyncSession) -> None:
        self.session = session
        self.output.refresh(status_key(session))
        if session.status.is_final and self.bound:
            self.manager.remove_progress_callback(self.session_id, self.on_snapshot)
            self.bound = False

    def static_bundle(self) -> dict[str, str]:
        from d365sync_nb.render import static_report
        from d365sync_nb.views.html import session_card

        return {"text/plain": static_report(self.session), "text/html": session_card(self.session)}

    def _ipython_display_(self) -> None:
        self.output.show()
