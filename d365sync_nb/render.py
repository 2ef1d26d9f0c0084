"""Plain-text rendering of sessions and tables, shared by the CLI and the notebook fallback."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from d365sync_nb.models import PhaseStatus, SyncSession

BAR_WIDTH = 24
STATUS_MARK = {
    PhaseStatus.PENDING: " ",
    PhaseStatus.RUNNING: ">",
    PhaseStatus.COMPLETED: "✓",
    PhaseStatus.FAILED: "✗",
    PhaseStatus.CANCELLED: "■",
    PhaseStatus.SKIPPED: "-",
    PhaseStatus.REUSED: "↺",
}


def bar(percent: float, width: int = BAR_WIDTH) -> str:
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "█" * filled + "░" * (width - filled)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def status_line(session: SyncSession) -> str:
    """One line: overall bar, percent, phase, ETA, rate."""
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
    return "  ".join(parts)


def phase_lines(session: SyncSession) -> list[str]:
    lines = []
    for p in session.phases.values():
        items = f"{p.items_processed:,}"
        if p.items_total is not None:
            items += f"/{p.items_total:,}"
        mark = STATUS_MARK[p.status]
        secs = fmt_seconds(p.seconds) if p.seconds is not None else ""
        line = (
            f" {mark} {p.phase.value:<13} {bar(p.percent, 16)} {p.status.value:<9}"
            f" {items:>15} {secs:>6}"
        )
        if p.error:
            line += f"  {p.error}"
        lines.append(line.rstrip())
    return lines


def session_report(session: SyncSession) -> str:
    """Multi-line report: header, phases, outcome."""
    head = (
        f"Session {session.session_id}  {session.strategy.value}  "
        f"version {session.global_version_id}  {session.status.value}  "
        f"{fmt_seconds(session.duration_seconds)}"
    )
    lines = [head, *phase_lines(session)]
    if session.message:
        lines.append(f"Note: {session.message}")
    if session.counts:
        c = session.counts
        lines.append(
            "Counts: "
            + ", ".join(
                f"{k.replace('_', ' ')} {c[k]:,}"
                for k in ("data_entities", "public_entities", "actions", "enumerations", "labels")
                if k in c
            )
        )
    if session.error:
        lines.append(f"Error: {session.error}")
    return "\n".join(lines)


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
