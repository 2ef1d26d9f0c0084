"""The widget panel against real sessions (in-process: widgets sync to no frontend)."""

from __future__ import annotations

import html

from IPython.core.interactiveshell import InteractiveShell

from d365sync_nb import notebook as nb
from d365sync_nb.models import PhaseStatus, SyncPhase, SyncStatus
from d365sync_nb.notebook.dashboard import Dashboard
from d365sync_nb.notebook.panel import REUSED_COLOR, SessionPanel
from d365sync_nb.notebook.state import state
from tests.support import poll


def classes(widget) -> set[str]:
    return set(widget._dom_classes)


def test_panel_structure_and_final_state(connected: InteractiveShell) -> None:
    session = nb.start(wait=True, display=False)
    panel = nb.get_panel()
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
    nb.start("full_without_labels", wait=True, display=False)
    row = nb.get_panel().rows[SyncPhase.LABELS]
    assert row.bar.bar_style == "" and row.bar.style.bar_color == "#d0d0d0"
    note = nb.get_session().phases[SyncPhase.LABELS].note
    assert row.text.value == html.escape("skipped" if note is None else f"skipped · {note}")
    assert "d365sync-status-skipped" in classes(row.box)


def test_reused_phase_is_full_grey_green_with_its_note(connected: InteractiveShell) -> None:
    session = nb.start(wait=True, display=False)
    panel = nb.get_panel()
    reused = session.model_copy(deep=True)
    entities = reused.phases[SyncPhase.ENTITIES]
    entities.status = PhaseStatus.REUSED
    entities.note = "reused 4,512 data entities from build 3"
    panel.paint(reused)
    row = panel.rows[SyncPhase.ENTITIES]
    assert row.text.value == "reused · reused 4,512 data entities from build 3"
    assert row.bar.value == 100 and row.bar.bar_style == ""
    assert row.bar.style.bar_color == REUSED_COLOR
    assert "d365sync-status-reused" in classes(row.box)
    schemas = panel.rows[SyncPhase.SCHEMAS]  # a note on a phase that did its work is shown too
    reused.phases[SyncPhase.SCHEMAS].note = "80 schemas, 3 new"
    panel.paint(reused)
    assert schemas.text.value.startswith("completed · 80/80 · ")
    assert schemas.text.value.endswith(" · 80 schemas, 3 new")
    assert schemas.bar.bar_style == "success" and schemas.bar.style.bar_color is None


def test_failed_session_is_red_and_never_repainted_success(connected: InteractiveShell) -> None:
    state.connection.emulator.configure(corrupt="non_json")
    failed = nb.start(wait=True, display=False)
    assert failed.status == SyncStatus.FAILED
    panel = nb.get_panel()
    entities = panel.rows[SyncPhase.ENTITIES]
    assert entities.bar.bar_style == "danger" and panel.overall_bar.bar_style == "danger"
    assert entities.text.value.startswith('<span style="color:#c62828">failed · 0')
    assert "not JSON: this does not look like the D365 metadata service" in entities.text.tooltip
    assert panel.summary.value.startswith('<span style="color:#c62828">Failed in phase entities')
    assert "not JSON: this does not look like the D365 metadata service" in panel.summary.value
    assert panel.cancel_button.disabled and panel.cancel_button.button_style == ""

    repainted = failed.model_copy(deep=True)  # a late, contradicting snapshot
    repainted.status = SyncStatus.COMPLETED
    repainted.phases[SyncPhase.ENTITIES].status = PhaseStatus.COMPLETED
    panel.paint(repainted)
    assert entities.bar.bar_style == "danger" and panel.overall_bar.bar_style == "danger"


def test_live_panel_follows_a_running_session(connected: InteractiveShell) -> None:
    state.connection.emulator.configure(latency_ms=20)
    session = nb.start(display=False)
    panel = SessionPanel(state.connection.manager, state.bridge, session)
    poll(lambda: panel.bound, what="the panel to bind on the loop thread")
    seen: set[float] = set()

    def finished() -> bool:
        seen.add(panel.overall_bar.value)
        return panel.overall_bar.bar_style == "success"

    poll(finished, what="the panel to reach success")
    assert panel.overall_bar.value == 100 and not panel.bound
    assert any(0 < v < 100 for v in seen), seen  # it moved through intermediate values
    assert panel.cancel_button.disabled


def test_cancel_button_cancels(connected: InteractiveShell) -> None:
    state.connection.emulator.configure(latency_ms=50)
    session = nb.start(display=False)
    panel = nb.get_panel(session.session_id)
    poll(lambda: panel.bound, what="the panel to bind")
    panel.cancel_button.click()  # handler hops onto the loop thread
    poll(lambda: not nb.get_session().is_running, what="the session to stop")
    assert nb.get_session().status == SyncStatus.CANCELLED
    poll(lambda: panel.overall_bar.bar_style == "warning", what="the panel to repaint")
    assert "d365sync-status-cancelled" in classes(panel.widget)
    assert panel.summary.value.startswith("Cancelled in phase ")
    cancelled = [r for r in panel.rows.values() if r.bar.bar_style == "warning"]
    assert len(cancelled) == 1


def test_dashboard_adds_and_retires_sessions(connected: InteractiveShell) -> None:
    manager = state.connection.manager
    nb.start("full_without_labels", wait=True, display=False)
    board = Dashboard(manager, state.bridge, state.panel_for, history_limit=5)
    poll(lambda: board.listening, what="the dashboard to listen")
    assert {"d365sync-dashboard"} <= classes(board.widget)
    assert "full_without_labels" in board.history.value and "No session is running" in str(
        board.running.children[0].value
    )
    state.connection.emulator.configure(latency_ms=20)
    session = nb.start("full", force=True, display=False)
    poll(lambda: session.session_id in board.panels, what="the dashboard to add a panel")
    assert board.running.children[0] is board.panels[session.session_id].widget
    poll(lambda: board.history.value.count("completed") == 2, what="the history to show it")
    assert not board.panels and "No session is running" in board.running.children[0].value
    board.close()
    assert not board.listening
