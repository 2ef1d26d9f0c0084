"""The notebook's state: its one connection, the loop sessions live on, live panels, the dashboard.

The commands read it through :data:`state`; the getters at the end (re-exported by
:mod:`d365sync_nb.notebook`) hand its parts to the user without displaying anything.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from d365sync_nb.connection import Connection
from d365sync_nb.errors import ConfigurationError, SessionNotFoundError
from d365sync_nb.models import SyncSession
from d365sync_nb.notebook import frontend
from d365sync_nb.notebook.config import D365Sync
from d365sync_nb.notebook.dashboard import Dashboard
from d365sync_nb.notebook.event_loop import LoopBridge, make_bridge
from d365sync_nb.notebook.notices import Notices, Told
from d365sync_nb.notebook.panel import SessionPanel, live_panel
from d365sync_nb.sync.manager import SyncSessionManager

NOT_CONNECTED = "Not connected: run %d365sync connect first (e.g. %d365sync connect --demo)"


@dataclass
class NotebookState:
    connection: Connection | None = None
    bridge: LoopBridge | None = None
    panels: OrderedDict[str, SessionPanel] = field(default_factory=OrderedDict)
    dashboard: Dashboard | None = None
    watch: Any = None  # the notebook's watch (commands/watch.py), running or stopped
    notices: Notices = field(default_factory=Notices)  # what the kernel told (notices.py)
    _watched: D365Sync | None = field(default=None, repr=False)  # config whose throttle we follow

    def __post_init__(self) -> None:
        self.notices.listeners.append(self._notices_changed)

    def _notices_changed(self, recent: list[Told]) -> None:
        if self.dashboard is not None:
            self.dashboard.show_notices([t.text for t in recent])

    # -- loop and connection ---------------------------------------------------------------
    def ensure_bridge(self) -> LoopBridge:
        if self.bridge is None:
            self.bridge = make_bridge(in_kernel=frontend.current_kernel() is not None)
        return self.bridge

    def require(self) -> tuple[SyncSessionManager, LoopBridge]:
        """The connected manager and its loop, or a one-line error."""
        if self.connection is None or self.bridge is None:
            raise ConfigurationError(NOT_CONNECTED)
        return self.connection.manager, self.bridge

    def use_widgets(self) -> bool:
        """Show sessions as widgets (a kernel whose frontend renders them), else as text."""
        return (
            self.bridge is not None
            and self.bridge.in_kernel
            and frontend.use_widgets(D365Sync.instance().display)
        )

    def replace_connection(self, conn: Connection | None) -> None:
        """Make ``conn`` the notebook's connection; drop the old one's panels and close it
        (which returns its manager lease and stops its emulator)."""
        old, self.connection = self.connection, conn
        if old is conn:
            return
        self.forget_panels()
        if conn is not None:
            config = D365Sync.instance()
            if self._watched is not config:
                config.observe(self._progress_interval_changed, names="progress_interval")
                self._watched = config
            self.apply_progress_interval(config.progress_interval)
        if old is not None:
            old.close()

    def apply_progress_interval(self, seconds: float) -> None:
        """Progress notifications of the connected manager: at most every ``seconds`` within a
        phase (always on phase transitions); every display paints what it is sent."""
        if self.connection is not None:
            self.connection.manager.progress_interval = seconds

    def _progress_interval_changed(self, change: Any) -> None:
        self.apply_progress_interval(change["new"])

    # -- sessions --------------------------------------------------------------------------
    def resolve_session(self, session_id: str | None, *, running_only: bool = False) -> str:
        """A full session id from an id, a unique prefix, or None (the latest session)."""
        manager, _ = self.require()
        try:
            return manager.find_session_id(session_id, running_only=running_only)
        except SessionNotFoundError as exc:
            if session_id is None and not running_only:
                raise SessionNotFoundError(
                    "No sync session recorded yet: run %d365sync start first"
                ) from None
            raise exc from None

    # -- displays --------------------------------------------------------------------------
    def panel_for(self, session_id: str) -> SessionPanel:
        """The live panel of a session (one per session, shared by every display of it)."""
        manager, bridge = self.require()
        return live_panel(self.panels, manager, bridge, session_id)

    def forget_panels(self) -> None:
        """Unbind the panels and the dashboard (they belong to the connection being left)."""
        if self.dashboard is not None:
            self.dashboard.close()
            self.dashboard = None
        for panel in self.panels.values():
            panel.unbind()
        self.panels.clear()


state = NotebookState()


# -- getters (no display) ------------------------------------------------------------------
def get_connection() -> Connection:
    """The notebook's connection (``.manager``, ``.settings``, ``.emulator`` for demos)."""
    state.require()
    assert state.connection is not None
    return state.connection


def get_session(session_id: str | None = None) -> SyncSession:
    """A session's current state (the latest session when no id), without displaying it."""
    manager, _ = state.require()
    return manager.get_sync_session(state.resolve_session(session_id))


def get_panel(session_id: str | None = None) -> SessionPanel:
    """The live widget panel of a session (the latest when no id)."""
    return state.panel_for(state.resolve_session(session_id))


def get_notices() -> list[Told]:
    """What this kernel told (newest last): each notice's event, line, and ``via`` ("toast"
    when JupyterLab was asked to show it, else "panel": the line in ``%d365sync panel``)."""
    return list(state.notices.told)
