"""The one text progress printer (render.ProgressPrinter), fed synthetic snapshots: what the
notebook's text display and the CLI's stderr show."""

from __future__ import annotations

import io
import re

from d365sync_nb import render
from d365sync_nb.models import PHASES, PhaseStatus, SyncPhase, SyncSession, SyncStatus, utcnow
from d365sync_nb.views import session as session_view


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def snapshot(ended: int, *, status: SyncStatus = SyncStatus.RUNNING) -> SyncSession:
    """A full sync whose first ``ended`` phases completed and whose next one runs."""
    session = SyncSession(
        session_id="00000000-0000-0000-0000-000000000001",
        environment="demo",
        strategy="full",
        global_version_id=1,
        status=status,
    )
    for index, phase in enumerate(PHASES):
        p = session.phases[phase]
        if index < ended:
            p.status, p.items_processed, p.items_total = PhaseStatus.COMPLETED, 10, 10
            p.started_at = p.completed_at = utcnow()
        elif index == ended and not status.is_final:
            p.status, p.items_processed, p.items_total = PhaseStatus.RUNNING, 3, 10
            p.started_at = utcnow()
            session.current_phase = phase
    if status.is_final:
        session.completed_at = utcnow()
    return session


def test_one_line_per_ended_phase_in_order_then_the_outcome() -> None:
    out = io.StringIO()
    printer = render.ProgressPrinter(out)
    printer(snapshot(0))
    assert out.getvalue() == ""  # nothing ended yet, and no live line off a terminal
    printer(snapshot(3))
    printer(snapshot(3))  # the same snapshot again prints nothing new
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["initializing", "version_check", "entities"]
    final = snapshot(8, status=SyncStatus.COMPLETED)
    final.counts = {"data_entities": 100, "public_entities": 80, "actions": 64, "labels": 872}
    printer(final)
    printer(final)  # finished: ignored
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines[:8]] == [p.value for p in PHASES]
    assert all(line.startswith(" ✓ ") and "completed" in line for line in lines[:8])
    assert lines[8].startswith(f"Session {final.session_id}  full  version 1  completed")
    assert lines[9] == "Counts: data entities 100, public entities 80, actions 64, labels 872"
    assert len(lines) == 10 and printer.finished
    assert "\r" not in out.getvalue()


def test_the_printed_lines_are_the_reports_lines() -> None:
    final = snapshot(8, status=SyncStatus.COMPLETED)
    out = io.StringIO()
    render.ProgressPrinter(out).update(final)
    report = render.session_report(final).splitlines()
    assert out.getvalue().splitlines() == [*report[1:9], report[0], *report[9:]]


def test_failed_phase_carries_the_error_once_and_pending_phases_follow() -> None:
    failed = snapshot(2, status=SyncStatus.FAILED)
    entities = failed.phases[SyncPhase.ENTITIES]
    entities.status = PhaseStatus.FAILED
    entities.error = "not JSON: this does not look like the D365 metadata service"
    failed.error = entities.error
    out = io.StringIO()
    render.ProgressPrinter(out).update(failed)
    lines = out.getvalue().splitlines()
    assert lines[2].startswith(" ✗ entities") and lines[2].endswith(entities.error)
    assert all(" not run" in line for line in lines[3:8]), lines  # they never will
    assert "pending" not in out.getvalue()
    assert lines[8].startswith("Session ") and " failed " in lines[8]
    assert out.getvalue().count(entities.error) == 1
    assert "Error: " in render.session_report(failed)  # the report keeps its error line


def test_reused_phase_counts_as_ended_and_shows_its_note() -> None:
    session = snapshot(2)
    entities = session.phases[SyncPhase.ENTITIES]
    entities.status, entities.note = PhaseStatus.REUSED, "reused 4,512 data entities from build 3"
    entities.current_item = None
    session.phases[SyncPhase.SCHEMAS].status = PhaseStatus.RUNNING
    session.current_phase = SyncPhase.SCHEMAS
    out = io.StringIO()
    render.ProgressPrinter(out).update(session)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(
        r" ↺ entities +█{16} reused +reused 4,512 data entities from build 3", lines[2]
    )


def test_a_terminal_also_gets_one_rewritten_status_line() -> None:
    out = Tty()
    printer = render.ProgressPrinter(out)
    printer(snapshot(0))
    printer(snapshot(0))
    assert out.getvalue().count("\r\033[K") == 2 and "\n" not in out.getvalue()
    printer(snapshot(1))  # the live line is cleared, the ended phase printed, the line redrawn
    text = out.getvalue()
    assert "\r\033[K ✓ initializing" in text and text.endswith(render.status_line(snapshot(1)))
    printer.close()
    assert out.getvalue().endswith("\r\033[K")
    printer(snapshot(8, status=SyncStatus.CANCELLED))
    assert out.getvalue().endswith("\n") and printer.finished


def test_summary_counts_are_listed_once() -> None:
    counts = {"labels": 5, "data_entities": 2, "properties": 9}
    assert session_view.summary_counts(counts) == [("data entities", 2), ("labels", 5)]
    assert session_view.counts_text(counts) == "2 data entities, 5 labels"
    assert [key for key, _ in session_view.SUMMARY_COUNTS] == [
        "data_entities",
        "public_entities",
        "actions",
        "enumerations",
        "labels",
    ]


def test_a_heartbeat_keeps_a_long_phase_from_going_silent_off_a_terminal() -> None:
    out = io.StringIO()
    printer = render.ProgressPrinter(out, heartbeat=0.0)  # every snapshot is "long enough"
    printer(snapshot(5))
    assert len(out.getvalue().splitlines()) == 5  # the ended phases: a line was just printed
    printer(snapshot(5))
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and lines[-1].split()[2] == "labels"  # then the status line
    printer(snapshot(5))
    assert len(out.getvalue().splitlines()) == 7
    quiet = io.StringIO()
    render.ProgressPrinter(quiet)(snapshot(5))  # no heartbeat: the phase lines only
    assert len(quiet.getvalue().splitlines()) == 5
    tty = Tty()
    render.ProgressPrinter(tty, heartbeat=0.0)(snapshot(5))  # a terminal has its live line
    assert tty.getvalue().count("\n") == 5
