"""The widget panel against real sessions (in-process: widgets sync to no frontend)."""

from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell

from d365sync_nb.models import PhaseStatus, SyncPhase, SyncStatus
from d365sync_nb.notebook import api
from d365sync_nb.notebook.context import context
from d365sync_nb.notebook.dashboard import Dashboard
from d365sync_nb.notebook.panel import SessionPanel

from .conftest import wait_until


def classes(widget) -> set[str]:
    return set(widget._dom_classes)


def test_panel_structure_and_final_state(connected: InteractiveShell) -> None:
    session = api.start(wait=True, display=False)
    panel = api.get_panel()
    assert panel.session_id == session.session_id and not panel.bound
    assert {"d365sync-panel", f"d365sync-session-{session.session_id}"} <= classes(panel.widget)
    assert "d365sync-status-completed" in classes(panel.widget)
    assert panel.overall_bar.value == 100 and panel.overall_bar.bar_style == "success"
    assert "d365sync-overall-bar" in classes(panel.overall_bar)
    for phase, row in panel.rows.items():
        assert {"d365sync-phase", f"d365sync-phase-{phase.value}"} <= classes(row.box)
        assert "d365sync-status-completed" in classes(row.box)
        assert row.bar.bar_style == "success" and row.bar.value == 100
    assert panel.cancel_button.disabled and "d365sync-cancel" in classes(panel.cancel_button)
    assert panel.summary.value.startswith("Completed in ")
    assert "100 data entities" in panel.summary.value
    bundle = panel._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    assert bundle["text/plain"].startswith(f"Session {session.session_id}  full  version 1")


def test_skipped_phase_is_grey_with_text(connected: InteractiveShell) -> None:
    api.start("full_without_labels", wait=True, display=False)
    row = api.get_panel().rows[SyncPhase.LABELS]
    assert row.bar.bar_style == "" and row.bar.style.bar_color == "#d0d0d0"
    assert row.text.value == "skipped" and "d365sync-status-skipped" in classes(row.box)


def test_failed_session_is_red_and_never_repainted_success(connected: InteractiveShell) -> None:
    context.connection.emulator.configure(corrupt="non_json")
    failed = api.start(wait=True, display=False)
    assert failed.status == SyncStatus.FAILED
    panel = api.get_panel()
    entities = panel.rows[SyncPhase.ENTITIES]
    assert entities.bar.bar_style == "danger" and panel.overall_bar.bar_style == "danger"
    assert entities.text.value.startswith('<span style="color:#c62828">failed · 0')
    assert "expected JSON but got text/html" in entities.text.tooltip
    assert panel.summary.value.startswith('<span style="color:#c62828">Failed in phase entities')
    assert "expected JSON but got text/html" in panel.summary.value
    assert panel.cancel_button.disabled and panel.cancel_button.button_style == ""

    repainted = failed.model_copy(deep=True)  # a late, contradicting snapshot
    repainted.status = SyncStatus.COMPLETED
    repainted.phases[SyncPhase.ENTITIES].status = PhaseStatus.COMPLETED
    panel.paint(repainted)
    assert entities.bar.bar_style == "danger" and panel.overall_bar.bar_style == "danger"


def test_live_panel_follows_a_running_session(connected: InteractiveShell) -> None:
    context.connection.emulator.configure(latency_ms=20)
    session = api.start(display=False)
    panel = SessionPanel(context.connection.manager, context.bridge, session, throttle=0.0)
    wait_until(lambda: panel.bound, what="the panel to bind on the loop thread")
    seen: set[float] = set()

    def finished() -> bool:
        seen.add(panel.overall_bar.value)
        return panel.overall_bar.bar_style == "success"

    wait_until(finished, what="the panel to reach success")
    assert panel.overall_bar.value == 100 and not panel.bound
    assert any(0 < v < 100 for v in seen), seen  # it moved through intermediate values
    assert panel.cancel_button.disabled


def test_cancel_button_cancels(connected: InteractiveShell) -> None:
    context.connection.emulator.configure(latency_ms=50)
    session = api.start(display=False)
    panel = api.get_panel(session.session_id)
    wait_until(lambda: panel.bound, what="the panel to bind")
    panel.cancel_button.click()  # handler hops onto the loop thread
    wait_until(lambda: not api.get_session().is_running, what="the session to stop")
    assert api.get_session().status == SyncStatus.CANCELLED
    wait_until(lambda: panel.overall_bar.bar_style == "warning", what="the panel to repaint")
    assert "d365sync-status-cancelled" in classes(panel.widget)
    assert panel.summary.value.startswith("Cancelled in phase ")
    cancelled = [r for r in panel.rows.values() if r.bar.bar_style == "warning"]
    assert len(cancelled) == 1


def test_dashboard_adds_and_retires_sessions(connected: InteractiveShell) -> None:
    manager = context.connection.manager
    api.start("full_without_labels", wait=True, display=False)
    board = Dashboard(manager, context.bridge, context.panel_for, history_limit=5)
    wait_until(lambda: board.listening, what="the dashboard to listen")
    assert {"d365sync-dashboard"} <= classes(board.widget)
    assert "full_without_labels" in board.history.value and "No session is running" in str(
        board.running.children[0].value
    )
    context.connection.emulator.configure(latency_ms=20)
    session = api.start("full", force=True, display=False)
    wait_until(lambda: session.session_id in board.panels, what="the dashboard to add a panel")
    assert board.running.children[0] is board.panels[session.session_id].widget
    wait_until(lambda: board.history.value.count("completed") == 2, what="the history to show it")
    assert not board.panels and "No session is running" in board.running.children[0].value
    board.close()
    assert not board.listening
