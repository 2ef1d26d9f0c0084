"""matplotlib charts: one session's phase timeline, and durations/throughput across the history.

Figures are built with ``matplotlib.figure.Figure`` (not pyplot), so a returned figure is shown
once by the notebook's formatter and never again by the inline backend.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from d365sync_nb.models import PHASES
from d365sync_nb.notebook.frontend import ensure_figure_display

STATUS_COLORS = {
    "pending": "#e0e0e0",
    "running": "#1976d2",
    "completed": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#f9a825",
    "skipped": "#bdbdbd",
    "reused": "#a5c6a7",
}
PHASE_COLORS = dict(
    zip(
        [p.value for p in PHASES],
        ["#9e9e9e", "#78909c", "#42a5f5", "#5c6bc0", "#26a69a", "#ffa726", "#ab47bc", "#8d6e63"],
        strict=True,
    )
)


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure that a notebook displays once, as an image."""
    ensure_figure_display()
    return Figure(figsize=(width, height), layout="constrained")


def phase_timeline(phases: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Gantt chart of one session (a ``phases`` frame): a bar per phase from start to end."""
    fig = new_figure(9, 3.2)
    ax = fig.add_subplot()
    started = phases.dropna(subset=["start"])
    origin = started["start"].min() if not started.empty else None
    labels = [str(p) for p in phases["phase"]]
    for row_index, row in enumerate(phases.itertuples(index=False)):
        status = str(row.status)
        if origin is None or pd.isna(row.start):
            ax.text(0, row_index, f"  {status}", va="center", fontsize=8, color="#757575")
            continue
        left = (row.start - origin).total_seconds()
        width = max(float(row.seconds or 0.0), 0.002)
        ax.barh(row_index, width, left=left, color=STATUS_COLORS.get(status, "#9e9e9e"))
        note = f" {width:.2f}s"
        if row.items:
            note += f" · {int(row.items):,} item{'' if row.items == 1 else 's'}"
        ax.text(left + width, row_index, note, va="center", fontsize=8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the session started")
    ax.margins(x=0.15)
    handles = [Patch(color=STATUS_COLORS[s], label=s) for s in sorted(set(map(str, phases.status)))]
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False
    )
    session = phases.attrs.get("session_id", "")
    ax.set_title(title or f"Phases of {phases.attrs.get('strategy', '')} session {session[:8]}")
    return fig


def _session_labels(history: pd.DataFrame) -> list[str]:
    return [
        f"{row.strategy}\n{row.started_at:%H:%M:%S}" if pd.notna(row.started_at) else row.strategy
        for row in history.itertuples(index=False)
    ]


def history_durations(history: pd.DataFrame) -> Figure:
    """Stacked bars: seconds per phase of each session (oldest left), outlined by status."""
    ordered = history.iloc[::-1].reset_index(drop=True)
    fig = new_figure(max(6.0, 1.1 * len(ordered) + 2), 3.8)
    ax = fig.add_subplot()
    bottom = pd.Series(0.0, index=ordered.index)
    for phase in PHASES:
        seconds = ordered[f"{phase.value}_seconds"].fillna(0.0)
        ax.bar(
            ordered.index,
            seconds,
            bottom=bottom,
            label=phase.value,
            color=PHASE_COLORS[phase.value],
            width=0.7,
        )
        bottom += seconds
    for i, row in enumerate(ordered.itertuples(index=False)):
        color = STATUS_COLORS.get(str(row.status), "#9e9e9e")
        ax.bar(i, bottom[i], width=0.7, fill=False, edgecolor=color, linewidth=2)
        ax.text(i, bottom[i], str(row.status), ha="center", va="bottom", fontsize=8, color=color)
    ax.set_xticks(list(ordered.index), _session_labels(ordered), fontsize=8)
    ax.set_ylabel("seconds")
    ax.set_title("Session durations by phase")
    ax.margins(y=0.12)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return fig


def history_throughput(history: pd.DataFrame) -> Figure:
    """Items per second of each session's busiest phases (entities, schemas, labels, indexing)."""
    ordered = history.iloc[::-1].reset_index(drop=True)
    fig = new_figure(max(6.0, 1.1 * len(ordered) + 2), 3.6)
    ax = fig.add_subplot()
    phases = ["entities", "schemas", "enumerations", "labels"]
    width = 0.8 / len(phases)
    for k, phase in enumerate(phases):
        items = ordered[f"{phase}_items"].astype("float64")
        seconds = ordered[f"{phase}_seconds"].astype("float64")
        rate = (items / seconds).where((seconds > 0) & (items > 1))
        positions = [i + (k - (len(phases) - 1) / 2) * width for i in ordered.index]
        ax.bar(positions, rate.fillna(0.0), width=width, label=phase, color=PHASE_COLORS[phase])
    ax.set_xticks(list(ordered.index), _session_labels(ordered), fontsize=8)
    ax.set_ylabel("items per second")
    ax.set_title("Throughput per phase")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return fig
