"""The dashboard: running sessions with their live panels, plus the recent history.

Widget structure and CSS classes::

    VBox  .d365sync-dashboard
      HTML  .d365sync-dashboard-title
      HTML  .d365sync-dashboard-watch       the watch's status line (empty without a watch)
      HTML  .d365sync-dashboard-notices     the last notices, .d365sync-notice each (a sync
                                            ended, a new version synced); see notices.py
      VBox  .d365sync-dashboard-running     one SessionPanel (.d365sync-panel) per running session
      HTML  .d365sync-dashboard-history     recent sessions as a table

Without widgets, :class:`TextDashboard` prints the same as text (a snapshot). The dashboard's
output also carries static ``text/html`` and ``text/plain`` of the current state, kept current
through its display id (:mod:`~d365sync_nb.notebook.live_output`), for viewers without widgets.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets

from d365sync_nb import render
from d365sync_nb.models import SyncSession
from d365sync_nb.notebook.event_loop import LoopBridge
from d365sync_nb.notebook.live_output import LiveOutput, status_key
from d365sync_nb.notebook.panel import SessionPanel
from d365sync_nb.redaction import redact_url
from d365sync_nb.sync.manager import SyncSessionManager
from d365sync_nb.views import frames as tables
from d365sync_nb.views import html as static_html

HISTORY_VIEW = ["started_at", "strategy", "status", "duration", "items", "error", "session_id"]
NO_RUNNING = "<i>No session is running.</i>"


def history_table(manager: SyncSessionManager, limit: int) -> str:
    """Recent sessions as an HTML table."""
    frame = tables.history_frame(manager.get_session_history(limit=limit))
    if frame.empty:
        return "<i>No session recorded yet.</i>"
    view = frame[HISTORY_VIEW].copy()
    view["started_at"] = view["started_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    view["duration"] = view["duration"].dt.total_seconds().round(1)
    view["session_id"] = view["session_id"].str.slice(0, 8)
    view["error"] = view["error"].fillna("").str.slice(0, 80)
    return view.to_html(index=False, classes="d365sync-history-table", border=0, escape=True)


class Dashboard:
    """Live dashboard bound to the manager's session listener; :meth:`close` unbinds it."""

    def __init__(
        self,
        manager: SyncSessionManager,
        bridge: LoopBridge,
        panel_for: Callable[[str], SessionPanel],
        *,
        history_limit: int = 10,
    ) -> None:
        self.manager = manager
        self.bridge = bridge
        self.panel_for = panel_for
        self.history_limit = history_limit
        self.panels: dict[str, SessionPanel] = {}
        self.title = widgets.HTML(
            f"<b>D365 metadata sync</b> · {html.escape(manager.settings.base_url)}"
        ).add_class("d365sync-dashboard-title")
        self.watch_line = widgets.HTML().add_class("d365sync-dashboard-watch")
        self.notices_line = widgets.HTML().add_class("d365sync-dashboard-notices")
        self.notices: list[str] = []
        self.running = widgets.VBox([widgets.HTML(NO_RUNNING)]).add_class(
            "d365sync-dashboard-running"
        )
        self.history = widgets.HTML().add_class("d365sync-dashboard-history")
        self.widget = widgets.VBox(
            [self.title, self.watch_line, self.notices_line, self.running, self.history]
        ).add_class("d365sync-dashboard")
        self.listening = False
        self.output = LiveOutput("dashboard", self._repr_mimebundle_)
        if bridge.on_loop_thread():
            self._start()
        else:
            bridge.call(self._start)

    def _start(self) -> None:
        for session in self.manager.get_active_sessions():
            self._add(session.session_id)
        self.refresh_history()
        self.manager.add_listener(self.on_snapshot)
        self.listening = True

    def _add(self, session_id: str) -> None:
        self.panels[session_id] = self.panel_for(session_id)
        self._layout()

    def _layout(self) -> None:
        boxes = [p.widget for p in self.panels.values()]
        self.running.children = boxes or [widgets.HTML(NO_RUNNING)]

    def on_snapshot(self, session: SyncSession) -> None:
        """Listener for every session of the manager: add new ones, retire finished ones."""
        sid = session.session_id
        if session.is_running and sid not in self.panels:
            self._add(sid)
        elif session.status.is_final and sid in self.panels:
            del self.panels[sid]
            self._layout()
            self.refresh_history()
        self.output.refresh(tuple(status_key(p.session) for p in self.panels.values()))

    def show_watch(self, line: str | None) -> None:
        """The watch's status line ("watching: next check 14:00 UTC; ..."), or none."""
        self.watch_line.value = f"<i>{html.escape(line)}</i>" if line else ""

    def show_notices(self, lines: list[str]) -> None:
        """The last notices, one line each (newest last), or none."""
        self.notices = list(lines)
        self.notices_line.value = "".join(
            f'<div class="d365sync-notice">🔔 {html.escape(n)}</div>' for n in lines
        )
        self.output.refresh(("notices", *self.notices))

    def refresh_history(self) -> None:
        self.history.value = "<b>Recent sessions</b>" + history_table(
            self.manager, self.history_limit
        )

    def close(self) -> None:
        """Stop listening (the session panels stay live where else displayed; this output's
        static part is still brought up to date after each cell)."""
        if self.listening:
            self.manager.remove_listener(self.on_snapshot)
            self.listening = False

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget view, and the static renderings of the current state."""
        data = self.widget._repr_mimebundle_(**kwargs) or {}
        text = TextDashboard(self.manager, self.history_limit, self.notices)
        data["text/plain"] = str(text)
        data["text/html"] = text.html()
        return data

    def _ipython_display_(self) -> None:
        self.output.show()


class TextDashboard:
    """A text snapshot of the dashboard."""

    def __init__(
        self,
        manager: SyncSessionManager,
        history_limit: int = 10,
        notices: Sequence[str] = (),
    ) -> None:
        self.manager = manager
        self.history_limit = history_limit
        self.notices = list(notices)

    def __str__(self) -> str:
        running = self.manager.get_active_sessions()
        lines = [f"D365 metadata sync · {redact_url(self.manager.settings.base_url)}", "Running:"]
        lines += [
            f"  {s.session_id[:8]} {s.strategy.value:<20} {render.status_line(s)}" for s in running
        ] or ["  (none)"]
        lines += [f"Notice: {n}" for n in self.notices]
        lines += ["Recent sessions:", render.table(self.history_rows())]
        return "\n".join(lines)

    def html(self) -> str:
        """The same as static HTML: each running session's card, then the recent history."""
        running = self.manager.get_active_sessions()
        cards = "".join(static_html.session_card(s) for s in running) or NO_RUNNING
        notices = "".join(f"<div>🔔 {html.escape(n)}</div>" for n in self.notices)
        title = html.escape(f"D365 metadata sync · {redact_url(self.manager.settings.base_url)}")
        return (
            f'<div style="{static_html.FONT}"><b>{title}</b>{notices}{cards}'
            f"<div><b>Recent sessions</b></div>{static_html.table(self.history_rows())}</div>"
        )

    def history_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "started_at": s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                "strategy": s.strategy.value,
                "status": s.status.value,
                "seconds": s.duration_seconds,
                "session_id": s.session_id[:8],
                "error": s.error,
            }
            for s in self.manager.get_session_history(limit=self.history_limit)
        ]

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))
