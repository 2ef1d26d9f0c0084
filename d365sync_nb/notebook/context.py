"""The notebook's state: options, its connection, the loop sessions live on, live panels."""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from d365sync_nb.connection import Connection
from d365sync_nb.errors import ConfigurationError, SessionNotFoundError
from d365sync_nb.notebook.event_loop import LoopBridge, make_bridge
from d365sync_nb.notebook.frontend import current_kernel, use_widgets
from d365sync_nb.sync.manager import SyncSessionManager

if TYPE_CHECKING:
    from d365sync_nb.notebook.dashboard import Dashboard
    from d365sync_nb.notebook.panel import SessionPanel

log = logging.getLogger(__name__)

NOT_CONNECTED = "Not connected: run %d365sync connect first (e.g. %d365sync connect --demo)"
MAX_PANELS = 32


@dataclass
class Options:
    """Defaults of the notebook surface (the ``D365Sync`` config traits write into these)."""

    default_strategy: str = "full"
    cache_dir: str | None = None
    throttle_interval: float = 0.1
    display: str = "auto"
    demo_scale: str = "small"
    demo_latency_ms: float = 20.0
    history_limit: int = 20


@dataclass
class NotebookContext:
    options: Options = field(default_factory=Options)
    connection: Connection | None = None
    bridge: LoopBridge | None = None
    panels: OrderedDict[str, SessionPanel] = field(default_factory=OrderedDict)
    dashboard: Dashboard | None = None

    # -- loop and connection ---------------------------------------------------------------
    def ensure_bridge(self) -> LoopBridge:
        if self.bridge is None:
            self.bridge = make_bridge(in_kernel=current_kernel() is not None)
        return self.bridge

    def require(self) -> tuple[SyncSessionManager, LoopBridge]:
        """The connected manager and its loop, or a one-line error."""
        if self.connection is None or self.bridge is None:
            raise ConfigurationError(NOT_CONNECTED)
        return self.connection.manager, self.bridge

    def use_widgets(self) -> bool:
        return (
            self.bridge is not None and self.bridge.in_kernel and use_widgets(self.options.display)
        )

    # -- sessions --------------------------------------------------------------------------
    def resolve_session(self, session_id: str | None, *, running_only: bool = False) -> str:
        """A full session id from an id, a unique prefix, or None (the latest session)."""
        manager, _ = self.require()
        if session_id is None or not str(session_id).strip():
            if running_only:
                active = manager.get_active_sessions()
                if not active:
                    raise SessionNotFoundError("No session is running")
                return active[-1].session_id
            latest = manager.latest_session_id()
            if latest is None:
                raise SessionNotFoundError(
                    "No sync session recorded yet: run %d365sync start first"
                )
            return latest
        text = str(session_id).strip().lower()
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
        if len(text) < 4 or any(c not in "0123456789abcdef-" for c in text):
            raise SessionNotFoundError(
                f"No sync session with id {session_id!r} (session ids are UUIDs; "
                "a unique prefix of 4+ characters also works)"
            )
        known = [s.session_id for s in manager.get_active_sessions()]
        known += [s.session_id for s in manager.get_session_history(limit=500)]
        matches = sorted({sid for sid in known if sid.startswith(text)})
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SessionNotFoundError(f"No sync session with id {session_id!r}")
        raise SessionNotFoundError(
            f"Session id prefix {session_id!r} matches {len(matches)} sessions; give more of it"
        )

    def panel_for(self, session_id: str) -> SessionPanel:
        """The live panel of a session (one per session, shared by every display of it)."""
        from d365sync_nb.notebook.panel import SessionPanel

        manager, bridge = self.require()
        panel = self.panels.get(session_id)
        if panel is not None and panel.manager is manager:
            self.panels.move_to_end(session_id)
            return panel
        panel = SessionPanel(
            manager,
            bridge,
            manager.get_sync_session(session_id),
            throttle=self.options.throttle_interval,
        )
        self.panels[session_id] = panel
        while len(self.panels) > MAX_PANELS:
            oldest = next(iter(self.panels))
            if self.panels[oldest].bound:
                break
            del self.panels[oldest]
        return panel

    def forget_connection(self) -> None:
        """Drop panels and the dashboard bound to the current manager."""
        if self.dashboard is not None:
            self.dashboard.close()
            self.dashboard = None
        for panel in self.panels.values():
            panel.unbind()
        self.panels.clear()


context = NotebookContext()
