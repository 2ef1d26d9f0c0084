"""Plain-text layout of sessions and tables, shared by the CLI and the notebook fallback.

It lays out the view models of :mod:`d365sync_nb.views`: a session's report
(:func:`session_report`), its live text progress (:class:`ProgressPrinter`, the CLI's stderr
and the notebook's text display alike), two sessions compared (:func:`compare_text`) and
tables (:func:`table`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from d365sync_nb import diagnostics
from d365sync_nb.models import PhaseStatus, SyncSession
from d365sync_nb.text import one_line
from d365sync_nb.views import PhaseView, SessionView, clock, figure
from d365sync_nb.views.session import summary_counts

BAR_WIDTH = 24


def bar(percent: float, width: int = BAR_WIDTH) -> str:
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "█" * filled + "░" * (width - filled)


def status_line(session: SyncSession) -> str:
    """One line: overall bar, percent, phase, ETA, rate (and retries, 429s, throttle wait
    when there were any)."""
    phase = session.current_phase.value if session.current_phase else session.status.value
    rate = session.items_per_second
    parts = [
        f"{bar(session.progress_percent)} {session.progress_percent:5.1f}%",
        f"{phase:<13}",
    ]
    if session.is_running:
        parts.append(f"ETA {clock(session.estimated_remaining_seconds)}")
        if rate:
            parts.append(f"{rate:,.0f} items/s")
    parts += SessionView(session).http_parts
    return "  ".join(parts)


def phase_line(p: PhaseView) -> str:
    """`` ✓ entities      ████████████████ completed         100/100     1s  note``"""
    items, secs = p.items, clock(p.elapsed) if p.elapsed is not None else ""
    if p.status == PhaseStatus.REUSED:  # fetched nothing: its note says what it reused
        items = secs = ""
    line = f" {p.mark} {p.name:<13} {bar(p.percent, 16)} {p.label:<9} {items:>15} {secs:>6}"
    if p.note:
        line += f"  {p.note}"
    if p.error:
        line += f"  {p.error}"
    return line.rstrip()


def phase_lines(session: SyncSession) -> list[str]:
    return [phase_line(p) for p in SessionView(session).phases]


def session_report(session: SyncSession) -> str:
    """Multi-line report: header, phases, outcome."""
    lines = outcome_lines(session)
    lines[1:1] = phase_lines(session)
    return "\n".join(lines)


def static_report(session: SyncSession) -> str:
    """The report a saved notebook keeps (the text beside a live view): headline, phases,
    the requests and, once ended, the outcome sentence."""
    view = SessionView(session)
    lines = [view.headline, *phase_lines(session), f"Requests: {view.http_summary}"]
    if session.message:
        lines.append(f"Note: {session.message}")
    lines.append(view.outcome or view.sentence)
    return "\n".join(lines)


def outcome_lines(session: SyncSession, *, phase_errors_shown: bool = False) -> list[str]:
    """The report without its phase lines: header, note, counts, retries and throttling (when
    any) and error (the error is left out when ``phase_errors_shown`` and a phase line already
    carries it)."""
    view = SessionView(session)
    lines = [view.headline]
    if session.message:
        lines.append(f"Note: {session.message}")
    counts = summary_counts(session.counts)
    if counts:
        lines.append("Counts: " + ", ".join(f"{label} {value:,}" for label, value in counts))
    if view.http_line:
        lines.append(view.http_line)
    in_phase = phase_errors_shown and any(p.error for p in session.phases.values())
    if session.error and not in_phase:
        lines.append(f"Error: {session.error}")
    return lines


_UNDERWAY = frozenset({PhaseStatus.PENDING, PhaseStatus.RUNNING})  # a phase that has not ended


class ProgressPrinter:
    """Text progress of one session, fed its snapshots (call it, or :meth:`update`).

    Deterministic for a given outcome (nbval compares it): one line per phase, in phase order,
    once that phase has ended, then the outcome lines (whose ``Requests:`` line, present only
    when a request was retried or throttled, carries counts that vary from run to run). On a
    terminal it also keeps one status line, rewritten in place, below them. :meth:`close` ends
    that line. Elsewhere (a CI log), ``heartbeat`` seconds (if given) without a line print the
    status line, so a long phase is not silent.
    """

    def __init__(self, stream: TextIO | None = None, *, heartbeat: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.heartbeat = None if self.tty else heartbeat
        self.finished = False
        self._printed = 0
        self._live = False
        self._last_line = time.monotonic()

    def __call__(self, session: SyncSession) -> None:
        self.update(session)

    def update(self, session: SyncSession) -> None:
        """Print what has newly ended (everything left, and the outcome, once final)."""
        if self.finished:
            return
        phases = list(session.phases.values())
        final = session.status.is_final
        lines: list[str] = []
        ended = 0
        while self._printed + ended < len(phases) and (
            final or phases[self._printed + ended].status not in _UNDERWAY
        ):
            ended += 1
        if ended:
            lines = phase_lines(session)[self._printed : self._printed + ended]
            self._printed += ended
        if final:
            lines += outcome_lines(session, phase_errors_shown=True)
            self.finished = True
        elif self._heartbeat_due(lines):
            lines = [status_line(session)]
        self._write(lines, None if final else status_line(session))

    def _heartbeat_due(self, lines: list[str]) -> bool:
        """Off a terminal, a long quiet phase gets a status line every ``heartbeat`` seconds."""
        if lines or self.heartbeat is None:
            return False
        return time.monotonic() - self._last_line >= self.heartbeat

    def close(self) -> None:
        """End the live status line (a terminal's cursor goes back to column 0)."""
        self._write([], None)

    def _write(self, lines: list[str], live: str | None) -> None:
        text = ""
        if self.tty and self._live and (lines or live is None):
            text += "\r\033[K"
            self._live = False
        text += "".join(line + "\n" for line in lines)
        if lines:
            self._last_line = time.monotonic()
        if self.tty and live is not None:
            text += "\r\033[K" + live
            self._live = True
        if text:
            self.stream.write(text)
            self.stream.flush()


def table(rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None) -> str:
    """A fixed-width text table of dict rows."""
    if not rows:
        return "(none)"
    cols = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    text = str(value)
    if not text.isprintable():  # service data with escapes or line breaks: one safe line
        text = one_line(text)
    return text if len(text) <= 60 else text[:57] + "..."


def compare_text(a: SyncSession, b: SyncSession, rows: list[dict[str, Any]]) -> str:
    """Who A and B are, then one line per phase and a total line: each figure as ``A → B``,
    with the ratio B/A of seconds and requests."""
    heads = [
        f"{name}: {s.session_id}  {s.strategy.value}  {s.status.value}  "
        f"{clock(s.duration_seconds)}  {s.http.requests:,} requests"
        for name, s in (("A", a), ("B", b))
    ]
    cells = [
        _compare_cells(
            r["phase"],
            {key: (r[f"a_{key}"], r[f"b_{key}"]) for key in diagnostics.COMPARED},
            r["seconds_ratio"],
            r["requests_ratio"],
        )
        for r in rows
    ]
    totals = {
        "status": (a.status.value, b.status.value),
        "seconds": (a.duration_seconds, b.duration_seconds),
        "items": (sum(r["a_items"] for r in rows), sum(r["b_items"] for r in rows)),
        "requests": (a.http.requests, b.http.requests),
        "retries": (a.http.retries, b.http.retries),
        "throttled": (a.http.throttled, b.http.throttled),
    }
    cells.append(
        _compare_cells(
            "total",
            totals,
            diagnostics.ratio(b.duration_seconds, a.duration_seconds),
            diagnostics.ratio(b.http.requests, a.http.requests),
        )
    )
    return "\n".join([*heads, "", table(cells)])


def _compare_cells(
    phase: str,
    pairs: dict[str, tuple[Any, Any]],
    seconds_ratio: float | None,
    requests_ratio: float | None,
) -> dict[str, str]:
    def pair(key: str) -> str:
        left, right = (figure(value) for value in pairs[key])
        return left if left == right and key == "status" else f"{left} → {right}"

    return {
        "phase": phase,
        "status A → B": pair("status"),
        "seconds": pair("seconds"),
        "s B/A": figure(seconds_ratio),
        "items": pair("items"),
        "requests": pair("requests"),
        "req B/A": figure(requests_ratio),
        "retries": pair("retries"),
        "429": pair("throttled"),
    }
