"""Plain-text rendering of sessions and tables, shared by the CLI and the notebook fallback.

The one place for text output: the counts a summary shows (:data:`SUMMARY_COUNTS`), a session's
report (:func:`session_report`), its retries and throttling (:func:`http_parts`, shown only when
nonzero) and the live text progress of a session (:class:`ProgressPrinter`, the CLI's stderr and
the notebook's text display alike).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from d365sync_nb import diagnostics
from d365sync_nb.models import PhaseProgress, PhaseStatus, SyncSession, SyncStatus

BAR_WIDTH = 24
# The counts a session summary shows, in order: (key of SyncSession.counts, label).
SUMMARY_COUNTS: tuple[tuple[str, str], ...] = (
    ("data_entities", "data entities"),
    ("public_entities", "public entities"),
    ("actions", "actions"),
    ("enumerations", "enumerations"),
    ("labels", "labels"),
)
STATUS_MARK = {
    PhaseStatus.PENDING: " ",
    PhaseStatus.RUNNING: ">",
    PhaseStatus.COMPLETED: "✓",
    PhaseStatus.FAILED: "✗",
    PhaseStatus.CANCELLED: "■",
    PhaseStatus.SKIPPED: "-",
    PhaseStatus.REUSED: "↺",
}
_UNDERWAY = frozenset({PhaseStatus.PENDING, PhaseStatus.RUNNING})  # a phase that has not ended


def summary_counts(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """``(label, value)`` of each :data:`SUMMARY_COUNTS` entry present in ``counts``."""
    return [(label, counts[key]) for key, label in SUMMARY_COUNTS if key in counts]


def counts_text(counts: Mapping[str, int]) -> str:
    """``100 data entities, 80 public entities, ...`` (the summary counts present)."""
    return ", ".join(f"{value:,} {label}" for label, value in summary_counts(counts))


def bar(percent: float, width: int = BAR_WIDTH) -> str:
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "█" * filled + "░" * (width - filled)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def wait_text(seconds: float) -> str:
    """A throttle wait: ``0.4 s``, ``12 s``, ``2m05s``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 60 else fmt_seconds(seconds)


def http_parts(session: SyncSession) -> list[str]:
    """What went wrong on the wire so far, only the nonzero figures: ``12 retries``,
    ``30 × 429``, ``waits 4.2 s`` (the waits before retries, Retry-After or backoff, summed
    over the requests that waited: it can exceed the session's time)."""
    http = session.http
    parts = []
    if http.retries:
        parts.append(f"{http.retries:,} retr{'y' if http.retries == 1 else 'ies'}")
    if http.throttled:
        parts.append(f"{http.throttled:,} × 429")
    if http.throttle_wait_seconds >= 0.05:
        parts.append(f"waits {wait_text(http.throttle_wait_seconds)}")
    return parts


def http_line(session: SyncSession) -> str | None:
    """The report's line on retries and throttling, or None when there were none."""
    parts = http_parts(session)
    if not parts:
        return None
    return f"Requests: {session.http.requests:,}, " + ", ".join(parts)


def status_line(session: SyncSession) -> str:
    """One line: overall bar, percent, phase, ETA, rate (and retries, 429s, throttle wait
    when there were any)."""
    phase = session.current_phase.value if session.current_phase else session.status.value
    rate = session.items_per_second
    eta = session.estimated_remaining_seconds
    parts = [
        f"{bar(session.progress_percent)} {session.progress_percent:5.1f}%",
        f"{phase:<13}",
    ]
    if session.is_running:
        parts.append(f"ETA {fmt_seconds(eta)}")
        if rate:
            parts.append(f"{rate:,.0f} items/s")
    parts += http_parts(session)
    return "  ".join(parts)


def session_sentence(session: SyncSession) -> str:
    """One sentence on where a session stands (assistants and one-line displays)."""
    if session.is_running:
        phase = session.current_phase.value if session.current_phase else "starting"
        eta = session.estimated_remaining_seconds
        left = f", about {eta:.{0 if eta >= 10 else 1}f} s left" if eta is not None else ""
        return f"Running: {session.progress_percent:.0f}% done, phase '{phase}'{left}."
    took = f"{session.duration_seconds:.1f} s"
    if session.status == SyncStatus.COMPLETED:
        return f"Completed in {took}."
    if session.status == SyncStatus.CANCELLED:
        return f"Cancelled after {took}."
    return f"Failed after {took}: {session.error or 'no error recorded'}"


def items_text(p: PhaseProgress) -> str:
    """``899/899``, ``12``, or nothing for a phase that counts no items (initializing, ...)."""
    if p.items_total is None:
        return f"{p.items_processed:,}" if p.items_processed else ""
    return f"{p.items_processed:,}/{p.items_total:,}"


def phase_lines(session: SyncSession) -> list[str]:
    lines = []
    for p in session.phases.values():
        items = items_text(p)
        mark = STATUS_MARK[p.status]
        secs = fmt_seconds(p.seconds) if p.seconds is not None else ""
        if p.status == PhaseStatus.REUSED:  # fetched nothing: its note says what it reused
            items = secs = ""
        line = (
            f" {mark} {p.phase.value:<13} {bar(p.percent, 16)} {p.status.value:<9}"
            f" {items:>15} {secs:>6}"
        )
        if p.note:
            line += f"  {p.note}"
        if p.error:
            line += f"  {p.error}"
        lines.append(line.rstrip())
    return lines


def session_report(session: SyncSession) -> str:
    """Multi-line report: header, phases, outcome."""
    lines = outcome_lines(session)
    lines[1:1] = phase_lines(session)
    return "\n".join(lines)


def outcome_lines(session: SyncSession, *, phase_errors_shown: bool = False) -> list[str]:
    """The report without its phase lines: header, note, counts, retries and throttling (when
    any) and error (the error is left out when ``phase_errors_shown`` and a phase line already
    carries it)."""
    head = (
        f"Session {session.session_id}  {session.strategy.value}  "
        f"version {session.global_version_id}  {session.status.value}  "
        f"{fmt_seconds(session.duration_seconds)}"
    )
    lines = [head]
    if session.message:
        lines.append(f"Note: {session.message}")
    counts = summary_counts(session.counts)
    if counts:
        lines.append("Counts: " + ", ".join(f"{label} {value:,}" for label, value in counts))
    http = http_line(session)
    if http:
        lines.append(http)
    in_phase = phase_errors_shown and any(p.error for p in session.phases.values())
    if session.error and not in_phase:
        lines.append(f"Error: {session.error}")
    return lines


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
    return text if len(text) <= 60 else text[:57] + "..."


def compare_text(a: SyncSession, b: SyncSession, rows: list[dict[str, Any]]) -> str:
    """Who A and B are, then one line per phase and a total line: each figure as ``A → B``,
    with the ratio B/A of seconds and requests."""
    heads = [
        f"{name}: {s.session_id}  {s.strategy.value}  {s.status.value}  "
        f"{fmt_seconds(s.duration_seconds)}  {s.http.requests:,} requests"
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
        left, right = (_figure(value) for value in pairs[key])
        return left if left == right and key == "status" else f"{left} → {right}"

    return {
        "phase": phase,
        "status A → B": pair("status"),
        "seconds": pair("seconds"),
        "s B/A": _figure(seconds_ratio),
        "items": pair("items"),
        "requests": pair("requests"),
        "req B/A": _figure(requests_ratio),
        "retries": pair("retries"),
        "429": pair("throttled"),
    }


def _figure(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
