"""How ``%d365sync diagnose`` shows why a session was slow or failed, in words and charts.

A :class:`DiagnosisView`: in a notebook it shows the verdict, what to do, the failed requests
(with the ids support asks for), then the requests-over-time and latency charts; in a terminal
or a plain text output (nbconvert to text, a CI log) the same report as text.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from d365sync_nb.diagnostics import Diagnosis, SyncWindows
from d365sync_nb.models import SyncSession
from d365sync_nb.notebook import frontend
from d365sync_nb.operations.checks import SyncWindowsView
from d365sync_nb.operations.views import DiagnosisResult
from d365sync_nb.views import charts, duration
from d365sync_nb.views import frames as tables

NO_LOG = "The request log of this session was pruned (only recent sessions keep one): no charts."


@dataclass
class DiagnosisView:
    """A session's diagnosis and its charts. ``.diagnosis`` (verdict, findings, facts, failed
    requests), ``.session``, ``.requests`` (its request log as a DataFrame, None once pruned),
    ``.figures`` (``requests_over_time`` and ``latency``, built when first asked for)."""

    diagnosis: Diagnosis
    session: SyncSession
    requests: pd.DataFrame | None

    @property
    def verdict(self) -> str:
        return self.diagnosis.verdict

    @cached_property
    def figures(self) -> dict[str, Figure]:
        if self.requests is None:
            return {}
        return {
            "requests_over_time": charts.requests_over_time(self.requests, self.session),
            "latency": charts.latency_by_endpoint(self.requests),
        }

    # -- text ------------------------------------------------------------------------------
    def facts_line(self) -> str:
        """The figures behind the verdict, on one line."""
        http = self.session.http
        codes = ", ".join(f"{n:,} × {code}" for code, n in sorted(http.by_status.items()))
        parts = [f"{http.requests:,} attempts" + (f" ({codes})" if codes else "")]
        parts.append(f"{http.retries:,} retried")
        if http.transport_errors:
            parts.append(f"{http.transport_errors:,} without an answer")
        if http.retry_wait_seconds:
            parts.append(f"waits before retries {duration(http.retry_wait_seconds)}")
        text = "Requests: " + ", ".join(parts)
        latency = http.latency_ms or {}
        if latency:
            text += " · latency " + ", ".join(
                f"{key} {latency[key]:.0f} ms" for key in ("p50", "p95", "p99", "max")
            )
        limits = http.concurrency or {}
        if limits.get("start") is not None:
            text += f" · concurrency {limits['start']}"
            if limits.get("min") != limits["start"] or limits.get("final") != limits["start"]:
                text += f", lowest {limits['min']}, at the end {limits['final']}"
        return text

    def text(self) -> str:
        """The report as text: verdict, figures, findings, failed requests."""
        lines = str(self.diagnosis).splitlines()
        lines.insert(1, self.facts_line())
        if self.requests is None:
            lines.append(NO_LOG)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())

    # -- HTML ------------------------------------------------------------------------------
    def html(self) -> str:
        """The report as HTML (without the charts)."""
        d = self.diagnosis
        out = [
            f'<div class="d365sync-diagnosis d365sync-status-{html.escape(d.status)}">',
            f"<p>Session <code>{html.escape(d.session_id)}</code> ({html.escape(d.status)}): "
            f'<b class="d365sync-verdict">{html.escape(d.verdict)}</b></p>',
            f'<p class="d365sync-facts"><small>{html.escape(self.facts_line())}</small></p>',
        ]
        if d.findings:
            items = "".join(f"<li>{html.escape(f)}</li>" for f in d.findings)
            out.append(f'<ul class="d365sync-findings">{items}</ul>')
        for css, title, rows in (
            ("failed", "Failed requests (give support the <code>ms-dyn-aid</code>):",
             d.failed_requests),
            ("retried", "Retried requests (the last few):", d.retried_requests),
        ):  # fmt: skip
            if rows:
                out.append(f"<p>{title}</p>")
                out.append(_requests_table(f"d365sync-{css}-requests", rows))
        if self.requests is None:
            out.append(f"<p><i>{html.escape(NO_LOG)}</i></p>")
        out.append("</div>")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        """The report with its charts inlined as PNG images (one self-contained block)."""
        images = "".join(
            f'<img alt="{name}" src="data:image/png;base64,{_png(fig)}"/>'
            for name, fig in self.figures.items()
        )
        return self.html() + images

    def _ipython_display_(self) -> None:
        """In IPython: the report (HTML and text), then each chart as its own output; a
        terminal (no kernel to show images) gets the text only."""
        from IPython.display import display

        display({"text/plain": self.text(), "text/html": self.html()}, raw=True)
        if frontend.current_kernel() is not None:
            for figure in self.figures.values():
                display(figure)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class WhenToSyncView:
    """When syncs go best (``diagnose --history``): ``.advice`` (per hour, the best and the
    worst window, or why there are too few sessions to tell) and ``.figure`` (its chart)."""

    advice: SyncWindows

    @property
    def verdict(self) -> str:
        return self.advice.verdict

    @cached_property
    def figure(self) -> Figure:
        return charts.sync_windows(self.advice.hours)

    def __str__(self) -> str:
        return str(self.advice)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _ipython_display_(self) -> None:
        """The verdict (HTML and text), then the chart when there are sessions to draw."""
        from IPython.display import display

        page = f'<p class="d365sync-when-to-sync"><b>{html.escape(self.verdict)}</b></p>'
        display({"text/plain": str(self), "text/html": page}, raw=True)
        if frontend.current_kernel() is not None and self.advice.hours:
            display(self.figure)


def diagnosis_view(result: DiagnosisResult | SyncWindowsView) -> DiagnosisView | WhenToSyncView:
    """The notebook's view of a diagnosis: the report with the charts of its request log (or,
    for ``--history``, when syncs go best and its chart)."""
    if isinstance(result, SyncWindowsView):
        return WhenToSyncView(result.advice)
    return DiagnosisView(
        diagnosis=result.diagnosis,
        session=result.session,
        requests=None if result.log is None else tables.requests_frame(result.log, result.session),
    )


def _requests_table(css_class: str, rows: list[dict[str, Any]]) -> str:
    """Requests as an HTML table: when, phase, endpoint, answer and the ids support asks for."""
    head = "".join(
        f"<th>{h}</th>"
        for h in ("started at", "phase", "endpoint", "answer", "ms-dyn-aid", "request id")
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(value))}</td>"
            for value in (
                r["started_at"],
                r["phase"] or "",
                r["endpoint"],
                r["status"] or r["error"],
                r["activity_id"] or "–",
                r["request_id"],
            )
        )
        + "</tr>"
        for r in rows
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
