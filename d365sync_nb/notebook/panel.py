"""The live session panel (ipywidgets 8), bound to the session manager's progress callbacks.

Structure and CSS classes (stable; browser tests select on them)::

    VBox  .d365sync-panel .d365sync-session-<id> .d365sync-status-<status>
      HTML  .d365sync-header              strategy, version, session id, plan note
      HBox  .d365sync-overall
        FloatProgress .d365sync-overall-bar   (bar_style follows the session status)
        HTML  .d365sync-overall-text      percent · ETA · items/s (percent · duration at the end),
                                          then, only when nonzero, in a span .d365sync-http:
                                          · 12 retries · 30 × 429 · waits 4.2 s
      VBox  .d365sync-phases
        HBox  .d365sync-phase .d365sync-phase-<phase> .d365sync-status-<phase status>
          Label .d365sync-phase-name
          FloatProgress .d365sync-phase-bar
          HTML  .d365sync-phase-text      status · items · seconds (· note); reused: its note
      HTML  .d365sync-current             current phase and item while running
      HBox  .d365sync-actions
        Button .d365sync-cancel           disabled once the session has ended
      HTML  .d365sync-summary             counts and duration, or the error in red

Beside the widget view, the panel's output carries a static ``text/html`` and ``text/plain``
of the state last painted (:mod:`d365sync_nb.views.html`, :func:`d365sync_nb.render.static_report`),
kept current through its display id (:class:`~d365sync_nb.notebook.live_output.LiveOutput`):
where widgets do not run (GitHub, nbconvert) a saved notebook shows the session's last state.

The widgets are built once; every snapshot received updates them under ``hold_sync`` (one
message per widget that changed). The manager's progress reporter is the one throttle (at most
every ``D365Sync.progress_interval`` seconds within a phase, always on transitions). Snapshots
arrive on the manager's loop; the Cancel button's callback may arrive on another thread
(ipykernel 7 subshells) and hops onto the loop.
"""

from __future__ import annotations

import contextlib
import html
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import ipywidgets as widgets

from d365sync_nb import render
from d365sync_nb.models import (
    PhaseProgress,
    PhaseStatus,
    SyncPhase,
    SyncSession,
    SyncStatus,
)
from d365sync_nb.notebook.event_loop import LoopBridge, clicks_reach_a_waiting_cell
from d365sync_nb.notebook.live_output import LiveOutput, status_key
from d365sync_nb.sync.manager import SyncSessionManager
from d365sync_nb.views import PhaseView, SessionView, clock
from d365sync_nb.views.html import session_card

PHASE_BAR_STYLE = {
    PhaseStatus.PENDING: "",
    PhaseStatus.RUNNING: "info",
    PhaseStatus.COMPLETED: "success",
    PhaseStatus.FAILED: "danger",
    PhaseStatus.CANCELLED: "warning",
    PhaseStatus.SKIPPED: "",
    PhaseStatus.REUSED: "",
}
SESSION_BAR_STYLE = {
    SyncStatus.RUNNING: "info",
    SyncStatus.COMPLETED: "success",
    SyncStatus.FAILED: "danger",
    SyncStatus.CANCELLED: "warning",
}
CANCEL_TOOLTIP = "Cancel this sync"
WAIT_TOOLTIP = "This cell is waiting for the sync: interrupt the kernel (■) to cancel it"
SKIPPED_COLOR = "#d0d0d0"
REUSED_COLOR = "#a5c6a7"  # grey-green: done, from the cache
# Phase bars drawn in their own colour rather than a bar_style.
PHASE_BAR_COLOR = {PhaseStatus.SKIPPED: SKIPPED_COLOR, PhaseStatus.REUSED: REUSED_COLOR}
ERROR_COLOR = "#c62828"
THROTTLED_COLOR = "#e65100"  # retries and 429s in the overall text
STATUS_CLASS_PREFIX = "d365sync-status-"
MAX_PANELS = 32  # live panels kept per notebook (running ones are never dropped)


def set_status_class(widget: widgets.DOMWidget, status: str) -> None:
    """Swap the widget's ``d365sync-status-*`` class for this status (one state message)."""
    classes = tuple(c for c in widget._dom_classes if not c.startswith(STATUS_CLASS_PREFIX))
    wanted = (*classes, STATUS_CLASS_PREFIX + status)
    if wanted != tuple(widget._dom_classes):
        widget._dom_classes = wanted


def percent_bar(bar_style: str, css_class: str) -> widgets.FloatProgress:
    """A 0-100 progress bar of the panel's fixed width."""
    bar = widgets.FloatProgress(
        value=0.0,
        min=0.0,
        max=100.0,
        bar_style=bar_style,
        layout=widgets.Layout(width="280px", flex="none"),
    )
    bar.add_class(css_class)
    return bar


class Smoothed:
    """Exponential moving average (tqdm-style smoothing of rate and ETA)."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.value: float | None = None
        self.key: object = None

    def update(self, value: float | None, key: object = None) -> float | None:
        if key != self.key:
            self.key, self.value = key, None
        if value is None:
            return self.value
        self.value = (
            value if self.value is None else self.alpha * value + (1 - self.alpha) * (self.value)
        )
        return self.value


class PhaseRow:
    """One phase: name, bar and text; a failed bar stays danger."""

    def __init__(self, phase: SyncPhase) -> None:
        self.phase = phase
        self.name = widgets.Label(phase.value, layout=widgets.Layout(width="110px", flex="none"))
        self.name.add_class("d365sync-phase-name")
        self.bar = percent_bar("", "d365sync-phase-bar")
        self.text = widgets.HTML("pending")
        self.text.add_class("d365sync-phase-text")
        self.box = widgets.HBox([self.name, self.bar, self.text])
        self.box.add_class("d365sync-phase").add_class(f"d365sync-phase-{phase.value}")
        set_status_class(self.box, PhaseStatus.PENDING.value)
        self.widgets: tuple[widgets.DOMWidget, ...] = (self.box, self.bar, self.text)

    def update(self, p: PhaseProgress) -> None:
        status = p.status
        if self.bar.bar_style == "danger" and status != PhaseStatus.FAILED:
            return  # never repaint a failed bar (tqdm's rule)
        self.bar.value = p.percent
        self.bar.bar_style = PHASE_BAR_STYLE[status]
        self.bar.style.bar_color = PHASE_BAR_COLOR.get(status)
        set_status_class(self.box, status.value)
        self.text.value = self._text(p)
        self.text.tooltip = p.error

    @staticmethod
    def _text(p: PhaseProgress) -> str:
        text = html.escape(PhaseView.of(p).summary)
        if p.status == PhaseStatus.FAILED:  # the error itself is in the summary (and tooltip)
            text = f'<span style="color:{ERROR_COLOR}">{text}</span>'
        return text


class SessionPanel:
    """Live widget view of one session. Display it (``display(panel)``) as often as you like."""

    def __init__(
        self,
        manager: SyncSessionManager,
        bridge: LoopBridge,
        session: SyncSession,
    ) -> None:
        self.manager = manager
        self.bridge = bridge
        self.session_id = session.session_id
        self.session = session
        self.bound = False
        self._rate = Smoothed()
        self._eta = Smoothed()
        self.output = LiveOutput(f"session-{self.session_id}", self._repr_mimebundle_)
        self._build()
        self.paint(session)
        if session.is_running:
            if bridge.on_loop_thread():
                self._bind()
            else:
                bridge.call(self._bind)

    # -- widgets ---------------------------------------------------------------------------
    def _build(self) -> None:
        self.header = widgets.HTML().add_class("d365sync-header")
        overall_name = widgets.Label("overall", layout=widgets.Layout(width="110px", flex="none"))
        self.overall_bar = percent_bar("info", "d365sync-overall-bar")
        self.overall_text = widgets.HTML().add_class("d365sync-overall-text")
        overall = widgets.HBox([overall_name, self.overall_bar, self.overall_text]).add_class(
            "d365sync-overall"
        )
        self.rows = {phase: PhaseRow(phase) for phase in self.session.phases}
        phases = widgets.VBox([row.box for row in self.rows.values()]).add_class("d365sync-phases")
        self.current = widgets.HTML().add_class("d365sync-current")
        self.cancel_button = widgets.Button(
            description="Cancel", icon="stop", button_style="warning", tooltip=CANCEL_TOOLTIP
        ).add_class("d365sync-cancel")
        self.cancel_button.on_click(self._on_cancel_click)
        actions = widgets.HBox([self.cancel_button]).add_class("d365sync-actions")
        self.summary = widgets.HTML().add_class("d365sync-summary")
        self.widget = widgets.VBox(
            [self.header, overall, phases, self.current, actions, self.summary]
        )
        self.widget.add_class("d365sync-panel").add_class(f"d365sync-session-{self.session_id}")
        # the widgets a snapshot may change (painted under hold_sync), then every widget
        self._updatable: tuple[widgets.DOMWidget, ...] = (
            self.widget,
            self.header,
            self.overall_bar,
            self.overall_text,
            self.current,
            self.cancel_button,
            self.summary,
            *(w for row in self.rows.values() for w in row.widgets),
        )
        static = (overall_name, overall, phases, actions, *(r.name for r in self.rows.values()))
        self._all: tuple[widgets.Widget, ...] = (*static, *self._updatable)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget view, and the static renderings of the state last painted."""
        data = self.widget._repr_mimebundle_(**kwargs) or {}
        data.update(self.static_bundle())
        return data

    def _ipython_display_(self) -> None:
        """Shown with a display id, so the static part follows the session (see the module)."""
        self.output.show()

    def static_bundle(self) -> dict[str, str]:
        """``text/plain`` and ``text/html`` of the state last painted."""
        return {"text/plain": self.text(), "text/html": self.html()}

    def text(self) -> str:
        """The text report of the state last painted."""
        return render.static_report(self.session)

    def html(self) -> str:
        """The static HTML of the state last painted (inline styles, no script)."""
        return session_card(self.session)

    # -- binding ---------------------------------------------------------------------------
    def _bind(self) -> None:
        """Subscribe to the session (on the loop's thread, so no notification is missed)."""
        if self.bound:
            return
        session = self.manager.get_sync_session(self.session_id)
        if not session.is_running:
            self.paint(session)
            return
        self.manager.add_progress_callback(self.session_id, self.on_snapshot)
        self.bound = True
        self.paint(session.model_copy(deep=True))

    def unbind(self) -> None:
        if self.bound:
            self.manager.remove_progress_callback(self.session_id, self.on_snapshot)
            self.bound = False

    def close(self) -> None:
        """Stop following and close the widgets (their outputs keep their last state)."""
        self.unbind()
        self.output.forget()
        for w in self._all:
            w.close()

    def on_snapshot(self, session: SyncSession) -> None:
        """Progress callback: paint the snapshot (the manager throttles how often it comes)."""
        self.paint(session)
        if session.status.is_final:
            self.unbind()

    # -- painting --------------------------------------------------------------------------
    def paint(self, session: SyncSession) -> None:
        """Update every widget from one snapshot (one sync message per changed widget)."""
        self.session = session
        with contextlib.ExitStack() as stack:
            for w in self._updatable:
                stack.enter_context(w.hold_sync())
            self._paint(session)
        self.output.refresh(status_key(session))

    def _paint(self, s: SyncSession) -> None:
        final = s.status.is_final
        set_status_class(self.widget, s.status.value)
        note = (
            f'<br><small style="color:#616161">{html.escape(s.message)}</small>'
            if (s.message)
            else ""
        )
        self.header.value = (
            f"<b>D365 metadata sync</b> · {html.escape(s.strategy.value)} · version "
            f"{s.global_version_id} · <code>{html.escape(s.session_id)}</code> · "
            f"<b>{s.status.value}</b>{note}"
        )
        if self.overall_bar.bar_style != "danger":
            self.overall_bar.value = s.progress_percent
            self.overall_bar.bar_style = SESSION_BAR_STYLE[s.status]
        self.overall_text.value = html.escape(self._overall_text(s)) + self._http_text(s)
        for phase, row in self.rows.items():
            row.update(s.phases[phase])
        self.current.value = self._current_text(s)
        if final:
            self.cancel_button.disabled = True
            self.cancel_button.description = "Cancel"
            self.cancel_button.button_style = ""
            self.summary.value = self._summary(s)

    def _overall_text(self, s: SyncSession) -> str:
        if s.status.is_final:
            return SessionView(s).progress
        eta = self._eta.update(s.estimated_remaining_seconds)
        rate = self._rate.update(s.items_per_second, key=s.current_phase)
        parts = [f"{s.progress_percent:.1f}%", f"ETA {clock(eta)}"]
        if rate:
            parts.append(f"{rate:,.0f} items/s")
        return " · ".join(parts)

    @staticmethod
    def _http_text(s: SyncSession) -> str:
        """Retries, 429s and the throttle wait so far, only when nonzero (an HTML span)."""
        parts = SessionView(s).http_parts
        if not parts:
            return ""
        text = html.escape(" · ".join(parts))
        return f' <span class="d365sync-http" style="color:{THROTTLED_COLOR}">· {text}</span>'

    @staticmethod
    def _current_text(s: SyncSession) -> str:
        if s.status.is_final or s.current_phase is None:
            return ""
        p = s.phases[s.current_phase]
        item = f": {html.escape(p.current_item)}" if p.current_item else ""
        return f"<b>{p.phase.value}</b>{item}"

    @staticmethod
    def _summary(s: SyncSession) -> str:
        outcome = html.escape(SessionView(s).outcome or "")
        if s.status == SyncStatus.FAILED:
            return f'<span style="color:{ERROR_COLOR}">{outcome}</span>'
        return outcome

    # -- cancel ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def blocking_wait(self) -> Iterator[None]:
        """While a cell blocks on this session (``--wait``). Where the kernel cannot deliver a
        click to a waiting cell (ipykernel < 7.4), the button says so instead of pretending."""
        if clicks_reach_a_waiting_cell() or self.session.status.is_final:
            yield
            return
        button = self.cancel_button
        with button.hold_sync():  # one message: disabled, and why
            button.disabled, button.tooltip = True, WAIT_TOOLTIP
        try:
            yield
        finally:
            if not self.session.status.is_final:
                with button.hold_sync():
                    button.disabled, button.tooltip = False, CANCEL_TOOLTIP

    def _on_cancel_click(self, _button: widgets.Button) -> None:
        self.bridge.call(self.cancel)

    def cancel(self) -> None:
        """Cancel the session (on the loop's thread); the final snapshot repaints the panel."""
        if self.session.status.is_final or self.cancel_button.disabled:
            return
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling…"
        self.bridge.spawn(self.manager.cancel_sync_session(self.session_id))


def live_panel(
    panels: OrderedDict[str, SessionPanel],
    manager: SyncSessionManager,
    bridge: LoopBridge,
    session_id: str,
) -> SessionPanel:
    """The live panel of a session, one per session in ``panels`` (the notebook's), shared by
    every display of it; past :data:`MAX_PANELS` the oldest unbound panels are forgotten."""
    panel = panels.get(session_id)
    if panel is not None and panel.manager is manager:
        panels.move_to_end(session_id)
        return panel
    panel = SessionPanel(manager, bridge, manager.get_sync_session(session_id))
    panels[session_id] = panel
    while len(panels) > MAX_PANELS:
        oldest = next(iter(panels))
        if panels[oldest].bound:
            break
        del panels[oldest]
    return panel
