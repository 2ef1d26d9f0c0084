"""matplotlib charts: one session's phase timeline and requests (rate, in-flight concurrency,
latency per endpoint), durations/throughput/retries across the history, and a diff by kind.

Figures are built with ``matplotlib.figure.Figure`` (not pyplot), so a returned figure is shown
once by the notebook's formatter and never again by the inline backend. Artists a reader (or a
test) may look for carry a ``gid``: ``429-markers``, ``error-markers``, ``in-flight``,
``limit``, ``request-rate``, ``429-rate``, ``history-http`` and ``diff-added|removed|changed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from d365sync_nb.models import PHASES, SyncSession

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
    """A pyplot-free figure that a notebook displays once, as an image (the notebook surface
    registers the figure formatter: :func:`d365sync_nb.notebook.frontend.ensure_figure_display`)."""
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


HTTP_SERIES = (  # history columns drawn under the history charts: (column, label, colour)
    ("retries", "retries", "#546e7a"),
    ("throttled", "429 answers", "#ef6c00"),
    ("transport_errors", "no answer (dropped, timed out)", "#c62828"),
)
THROTTLED_COLOR = "#ef6c00"
ERROR_COLOR = "#c62828"
RATE_COLOR = "#64b5f6"
INFLIGHT_COLOR = "#1565c0"


def _history_axes(ordered: pd.DataFrame, width: float, height: float) -> tuple[Figure, Axes, Axes]:
    """The figure of a history chart: its main axes, and the axes below them that draw the
    retries and 429s of each session (the main axes again when no session had any)."""
    fig = new_figure(width, height)
    if not _has_http(ordered):
        ax = fig.add_subplot()
        return fig, ax, ax
    fig.set_figheight(height + 1.3)
    ax, below = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    return fig, ax, below


def _has_http(ordered: pd.DataFrame) -> bool:
    return any(
        column in ordered and bool((ordered[column].fillna(0) > 0).any())
        for column, _, _ in HTTP_SERIES
    )


def _http_bars(ax: Axes, ordered: pd.DataFrame) -> None:
    """Retries, 429s and attempts without an answer of each session, as grouped bars with
    their counts (the series that are all zero are left out)."""
    series = [
        (column, label, color)
        for column, label, color in HTTP_SERIES
        if column in ordered and (ordered[column].fillna(0) > 0).any()
    ]
    width = 0.8 / len(series)
    for k, (column, label, color) in enumerate(series):
        values = ordered[column].fillna(0).astype("int64")
        positions = [i + (k - (len(series) - 1) / 2) * width for i in ordered.index]
        bars = ax.bar(positions, values, width=width, color=color, label=label, gid="history-http")
        ax.bar_label(bars, labels=[f"{v:,}" if v else "" for v in values], fontsize=7)
    ax.set_ylabel("requests")
    ax.margins(y=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def history_durations(history: pd.DataFrame) -> Figure:
    """Stacked bars: seconds per phase of each session (oldest left), outlined by status; below
    them, when any session was retried or throttled, its retries and 429s."""
    ordered = history.iloc[::-1].reset_index(drop=True)
    fig, ax, below = _history_axes(ordered, max(6.0, 1.1 * len(ordered) + 2), 3.8)
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
    ax.set_ylabel("seconds")
    ax.set_title("Session durations by phase")
    ax.margins(y=0.12)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    if below is not ax:
        _http_bars(below, ordered)
    below.set_xticks(list(ordered.index), _session_labels(ordered), fontsize=8)
    return fig


def history_throughput(history: pd.DataFrame) -> Figure:
    """Items per second of each session's data phases (entities, schemas, enumerations,
    labels); below them, when any session was retried or throttled, its retries and 429s."""
    ordered = history.iloc[::-1].reset_index(drop=True)
    fig, ax, below = _history_axes(ordered, max(6.0, 1.1 * len(ordered) + 2), 3.6)
    phases = ["entities", "schemas", "enumerations", "labels"]
    width = 0.8 / len(phases)
    for k, phase in enumerate(phases):
        items = ordered[f"{phase}_items"].astype("float64")
        seconds = ordered[f"{phase}_seconds"].astype("float64")
        rate = (items / seconds).where((seconds > 0) & (items > 1))
        positions = [i + (k - (len(phases) - 1) / 2) * width for i in ordered.index]
        ax.bar(positions, rate.fillna(0.0), width=width, label=phase, color=PHASE_COLORS[phase])
    ax.set_ylabel("items per second")
    ax.set_title("Throughput per phase")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    if below is not ax:
        _http_bars(below, ordered)
    below.set_xticks(list(ordered.index), _session_labels(ordered), fontsize=8)
    return fig


# -- one session's requests (a ``requests`` frame) -------------------------------------------
NICE_BINS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TARGET_BINS = 80  # bins across a session's span in the rate chart


def failed_mask(requests: pd.DataFrame) -> pd.Series:
    """Attempts that got no usable answer apart from throttling: 5xx, other 4xx (a label the
    service does not know, 404 on Labels, is data) and attempts without a complete answer."""
    status = requests["status"].astype("Float64")
    labels_404 = (status == 404) & (requests["endpoint"].astype("string") == "Labels")
    bad_status = (status >= 400) & (status != 429) & ~labels_404
    return (bad_status.fillna(False) | requests["status"].isna()).astype(bool)


def _origin(requests: pd.DataFrame, session: SyncSession | None) -> pd.Timestamp | None:
    if session is not None:
        return pd.Timestamp(session.started_at)
    start = requests.attrs.get("session_started_at")
    if start is not None:
        return pd.Timestamp(start)
    return requests["started_at"].min() if not requests.empty else None


def _nice_bin(span: float) -> float:
    wanted = span / TARGET_BINS
    return next((b for b in NICE_BINS if b >= wanted), NICE_BINS[-1])


def in_flight(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Requests in flight over time from their (start, end) intervals: the times at which the
    count changes and the count from each of them on (a step function, ends before starts at
    equal times)."""
    if len(starts) == 0:
        return np.array([0.0]), np.array([0])
    times = np.concatenate([starts, ends])
    deltas = np.concatenate([np.ones(len(starts), int), -np.ones(len(ends), int)])
    order = np.lexsort((deltas, times))  # by time, then -1 before +1
    return times[order], np.cumsum(deltas[order])


def _limit_steps(concurrency: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """The limiter's limit as a step function: its start value from 0, then each change."""
    if not concurrency or concurrency.get("start") is None:
        return np.array([]), np.array([])
    changes = [(float(t), int(limit)) for t, limit in concurrency.get("changes") or ()]
    times = np.array([0.0, *(t for t, _ in changes)])
    values = np.array([int(concurrency["start"]), *(limit for _, limit in changes)])
    return times, values


def per_bin(times: np.ndarray, values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, ...]:
    """A step function (``values[i]`` from ``times[i]`` on, 0 before the first) summarised over
    each bin of ``edges``: its time-weighted mean and its maximum."""
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    if len(times) == 0:
        zeros = np.zeros(len(edges) - 1)
        return zeros, zeros
    grid = np.unique(np.concatenate([times, edges]))
    index = np.searchsorted(times, grid, side="right") - 1
    level = np.where(index >= 0, values[np.clip(index, 0, None)], 0.0)  # level from each point
    area = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(grid))])
    at_edges = np.interp(edges, grid, area)
    mean = np.diff(at_edges) / np.diff(edges)
    bin_of = np.searchsorted(edges, grid[:-1], side="right") - 1  # each segment's bin
    peak = np.zeros(len(edges) - 1)
    inside = (bin_of >= 0) & (bin_of < len(peak))
    np.maximum.at(peak, bin_of[inside], level[:-1][inside])
    return mean, peak


def requests_over_time(
    requests: pd.DataFrame,
    session: SyncSession | None = None,
    *,
    bin_seconds: float | None = None,
) -> Figure:
    """One session's attempts over time (a ``requests`` frame of its whole log), in bins of
    ``bin_seconds`` (about 80 across the session when not given).

    Top: attempts started per second, the 429 answers per second, and a mark at the top for
    each 429 (``v``) and each attempt that failed otherwise (``x``: 5xx, dropped, timed out).
    Bottom: requests in flight (from each attempt's start and latency; the most in each bin
    shaded, the time-weighted mean as a line) and, dashed, the mean limit the client's limiter
    allowed (``session.http.concurrency``, else the frame's ``attrs``; its changes are timed
    from the client's start, which is the session's start), so throttling and the limiter's
    answer to it show side by side.
    """
    fig = new_figure(10, 5.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1])
    session_id = session.session_id if session else requests.attrs.get("session_id", "")
    title = f"Requests of session {session_id[:8]}" if session_id else "Requests"
    origin = _origin(requests, session)
    if origin is None or requests.empty:
        top.text(
            0.5, 0.5, "no requests recorded", ha="center", va="center", transform=top.transAxes
        )
        top.set_title(title)
        return fig
    starts = (requests["started_at"] - origin).dt.total_seconds().to_numpy(dtype=float)
    ends = starts + requests["latency_ms"].fillna(0.0).to_numpy(dtype=float) / 1000.0
    span = float(ends.max())
    if session is not None and session.completed_at is not None:
        span = max(span, session.duration_seconds)
    width = bin_seconds or _nice_bin(max(span, 0.01))
    first = min(0.0, float(starts.min()))  # the client starts with the session, not before
    edges = np.arange(first, span + width, width)
    if len(edges) < 2:
        edges = np.array([first, first + width])
    counts, _ = np.histogram(starts, bins=edges)
    top.stairs(
        counts / width,
        edges,
        fill=True,
        color=RATE_COLOR,
        alpha=0.6,
        label="attempts per second",
        gid="request-rate",
    )
    throttled = (requests["status"] == 429).fillna(False).to_numpy(dtype=bool)
    failed = failed_mask(requests).to_numpy(dtype=bool)
    if throttled.any():
        rate_429, _ = np.histogram(starts[throttled], bins=edges)
        top.stairs(
            rate_429 / width,
            edges,
            color=THROTTLED_COLOR,
            linewidth=1.5,
            label="429 answers per second",
            gid="429-rate",
        )
    rug = top.get_xaxis_transform()  # x in seconds, y in axes fraction
    for mask, y, marker, color, label, gid in (
        (throttled, 0.96, "v", THROTTLED_COLOR, "429", "429-markers"),
        (failed, 0.88, "x", ERROR_COLOR, "5xx / no answer", "error-markers"),
    ):
        if mask.any():
            top.scatter(
                starts[mask],
                np.full(int(mask.sum()), y),
                transform=rug,
                marker=marker,
                s=14,
                color=color,
                alpha=0.5,
                linewidths=1,
                clip_on=False,
                label=f"{label} ({int(mask.sum()):,})",
                gid=gid,
            )
    top.set_ylabel("attempts per second")
    top.set_ylim(0, max(1.0, float((counts / width).max())) * 1.25)
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    times, flying = in_flight(starts, ends)
    mean, peak = per_bin(times, flying, edges)
    bottom.stairs(
        peak,
        edges,
        fill=True,
        color=RATE_COLOR,
        alpha=0.45,
        label="in flight (most)",
        gid="in-flight-max",
    )
    bottom.stairs(
        mean, edges, color=INFLIGHT_COLOR, linewidth=1.5, label="in flight (mean)", gid="in-flight"
    )
    concurrency = session.http.concurrency if session else requests.attrs.get("concurrency")
    limit_times, limits = _limit_steps(concurrency)
    if len(limit_times):
        limit_mean, _ = per_bin(limit_times, limits, edges)
        bottom.stairs(
            limit_mean,
            edges,
            color=THROTTLED_COLOR,
            linestyle="--",
            linewidth=1.5,
            label="limit (client's limiter, mean)",
            gid="limit",
        )
    bottom.set_ylabel(f"requests in flight\n(per {width:g} s)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("seconds since the session started")
    bottom.set_xlim(first, span)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    summary = f"{len(requests):,} attempts"
    if throttled.any():
        summary += f", {int(throttled.sum()):,} × 429"
    if failed.any():
        summary += f", {int(failed.sum()):,} failed"
    top.set_title(f"{title}: {summary}")
    return fig


def latency_by_endpoint(requests: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Latency per endpoint class (most requested first): a box per class of the attempts the
    service answered, every attempt as a point over it (429s ``v``, other failures ``x``);
    log scale when latencies span more than a factor of 30."""
    fig = new_figure(9, 4.2)
    ax = fig.add_subplot()
    session_id = requests.attrs.get("session_id", "")
    heading = title or (
        f"Latency per endpoint, session {session_id[:8]}" if session_id else "Latency per endpoint"
    )
    frame = requests.dropna(subset=["latency_ms"])
    if frame.empty:
        ax.text(0.5, 0.5, "no requests recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(heading)
        return fig
    names = frame["endpoint"].astype("string").to_numpy(dtype=object)
    latency = frame["latency_ms"].to_numpy(dtype=float)
    throttled = (frame["status"] == 429).fillna(False).to_numpy(dtype=bool)
    failed = failed_mask(frame).to_numpy(dtype=bool)
    answered = ~(throttled | failed)
    endpoints = pd.Series(names).value_counts().index.tolist()
    boxes = []
    for endpoint in endpoints:
        mine = names == endpoint
        boxes.append(latency[mine & answered] if (mine & answered).any() else latency[mine])
    counts = [int((names == e).sum()) for e in endpoints]
    ax.boxplot(
        boxes,
        tick_labels=[f"{e} ({n:,})" for e, n in zip(endpoints, counts, strict=True)],
        showfliers=False,
        widths=0.6,
        medianprops={"color": INFLIGHT_COLOR, "linewidth": 1.5},
    )
    rng = np.random.default_rng(0)  # fixed jitter: the same frame draws the same chart
    position = {e: i + 1 for i, e in enumerate(endpoints)}
    for mask, marker, size, color, alpha, label, gid in (
        (answered, ".", 4, "#78909c", 0.3, "answered", "answered-points"),
        (throttled, "v", 12, THROTTLED_COLOR, 0.6, "429", "429-markers"),
        (failed, "x", 14, ERROR_COLOR, 0.7, "5xx / no answer", "error-markers"),
    ):
        if not mask.any():
            continue
        xs = np.array([position[e] for e in names[mask]], dtype=float)
        ax.scatter(
            xs + rng.uniform(-0.2, 0.2, len(xs)),
            latency[mask],
            marker=marker,
            s=size,
            color=color,
            alpha=alpha,
            zorder=3,
            gid=gid,
            label=f"{label} ({int(mask.sum()):,})",
        )
    positive = latency[latency > 0]
    if positive.size and positive.max() / positive.min() > 30:
        ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.tick_params(axis="x", labelsize=8, labelrotation=25)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    p50, p95 = np.percentile(latency, [50, 95])
    ax.set_title(f"{heading}: p50 {p50:.0f} ms, p95 {p95:.0f} ms (all attempts)")
    return fig


CHANGE_COLORS = {"added": "#2e7d32", "removed": "#c62828", "changed": "#f9a825"}


def changes_by_kind(diff: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Stacked bars of a ``diff`` frame: items added, removed and changed per kind (an item
    with several changed attributes counts once). The bars carry ``gid`` ``diff-<change>``."""
    items = diff.drop_duplicates(subset=["kind", "parent", "name", "change"])
    counts = (
        items.groupby(["kind", "change"], observed=False).size().unstack(fill_value=0)
        if not items.empty
        else pd.DataFrame(columns=list(CHANGE_COLORS))
    )
    counts = counts[[c for c in CHANGE_COLORS if c in counts.columns]]
    counts = counts[counts.sum(axis=1) > 0] if not counts.empty else counts
    fig = new_figure(8, 0.45 * max(len(counts), 1) + 1.2)
    ax = fig.add_subplot()
    left = np.zeros(len(counts))
    labels = [str(k).replace("_", " ") for k in counts.index]
    for change, color in CHANGE_COLORS.items():
        if change not in counts.columns:
            continue
        values = counts[change].to_numpy(dtype=float)
        ax.barh(labels, values, left=left, color=color, label=change, gid=f"diff-{change}")
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("items")
    if counts.empty:
        ax.text(0.5, 0.5, "no changes", transform=ax.transAxes, ha="center", color="#757575")
    else:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or diff.attrs.get("title") or "changes by kind", fontsize=10)
    return fig


COVERAGE_COLORS = {
    "found": "#2e7d32",
    "empty": "#f9a825",
    "missing": "#c62828",
    "failed": "#6a1b9a",
    "not_synced": "#9e9e9e",
}


def label_coverage(coverage: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Stacked bars of a ``coverage`` frame: per language, the labels found, empty, missing,
    failed and not synced. The bars carry ``gid`` ``coverage-<status>``."""
    fig = new_figure(8, 0.45 * max(len(coverage), 1) + 1.2)
    ax = fig.add_subplot()
    languages = [str(x) for x in coverage["language"]] if len(coverage) else []
    left = np.zeros(len(languages))
    for status, color in COVERAGE_COLORS.items():
        if status not in coverage.columns:
            continue
        values = coverage[status].fillna(0).to_numpy(dtype=float)
        if not values.any():
            continue
        ax.barh(languages, values, left=left, color=color, label=status.replace("_", " "),
                gid=f"coverage-{status}")  # fmt: skip
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("labels the version references")
    if not languages:
        ax.text(0.5, 0.5, "no labels", transform=ax.transAxes, ha="center", color="#757575")
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or coverage.attrs.get("title") or "label coverage", fontsize=10)
    return fig


def sync_windows(hours: list[dict[str, Any]], *, title: str | None = None) -> Figure:
    """When syncs go best: per hour of day (UTC), the median duration (bars, ``gid``
    ``median-duration``) and the 429 and failure rates (lines, ``429-rate`` and
    ``failure-rate``), from :func:`d365sync_nb.diagnostics.sync_windows`'s ``hours``."""
    fig = new_figure(9, 3.2)
    ax = fig.add_subplot()
    every = np.arange(24)
    by_hour = {h["hour"]: h for h in hours}
    medians = [(by_hour[h]["median_seconds"] or 0) / 60 if h in by_hour else 0 for h in every]
    bars = ax.bar(every, medians, color="#90caf9", label="median duration (min)")
    for bar in bars:
        bar.set_gid("median-duration")
    ax.set_xlabel("hour of day (UTC)")
    ax.set_ylabel("median minutes")
    ax.set_xticks(every[::2])
    rates = ax.twinx()
    for key, color, gid, label in (
        ("throttle_rate", "#ef6c00", "429-rate", "429 answers (%)"),
        ("failure_rate", "#c62828", "failure-rate", "failed sessions (%)"),
    ):
        xs = [h["hour"] for h in hours]
        (line,) = rates.plot(
            xs, [h[key] * 100 for h in hours], "o-", color=color, label=label, markersize=4
        )
        line.set_gid(gid)
    rates.set_ylabel("%")
    rates.set_ylim(bottom=0)
    handles: list[Any] = [bars, *rates.get_lines()]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    ax.set_title(title or "When syncs go best (by the hour they started)")
    return fig
