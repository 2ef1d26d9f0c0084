"""A session's report: one self-contained HTML file that support or a colleague opens without
Jupyter (the ``report`` operation writes it), and its text summary.

Sections: the summary (the session card), the phases' Gantt, the diagnose verdict and what to
do, the charts of its requests, the http record, the last failed requests with their activity
ids, and, for a sync after an upgrade, the diff summary. Charts are inline SVG; nothing is
fetched; nothing depends on when the report is written, so the same session gives the same
bytes. Every text (not the charts' data URIs) passes through :func:`d365sync_nb.redaction.redact`
with the connection's secrets before it is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from d365sync_nb import render
from d365sync_nb.diagnostics import Diagnosis
from d365sync_nb.explorer import Diff
from d365sync_nb.models import SyncSession
from d365sync_nb.redaction import redact
from d365sync_nb.views import html as h
from d365sync_nb.views.format import count, duration

NO_LOG = "The request log of this session was pruned (only recent sessions keep one)."
REQUEST_CELLS = ("started_at", "phase", "endpoint", "answer", "activity_id", "request_id")
SECTION = "margin:22px 0 6px;font-size:16px"


@dataclass
class SessionReport:
    """A session with its request log (None once pruned), diagnosis and upgrade diff (None
    when there is no earlier version); ``environment`` is shown as given (redacted first)."""

    session: SyncSession
    log: list[dict[str, Any]] | None
    diagnosis: Diagnosis
    diff: Diff | None
    environment: str
    secrets: frozenset[str] = field(default_factory=frozenset, repr=False)
    path: str | None = None

    @property
    def title(self) -> str | None:
        return f"Report of session {self.session.session_id} written to {self.path}" if (
            self.path
        ) else None

    # -- text ------------------------------------------------------------------------------
    def text(self) -> str:
        lines = [render.static_report(self.session), "", str(self.diagnosis)]
        if self.diff is not None:
            lines += ["", f"Changes: {self.diff_heading}"]
        return self._clean("\n".join(lines))

    def to_json(self) -> Any:
        return self._clean(
            {
                "session": self.session.to_dict(),
                "diagnosis": self.diagnosis.to_dict(),
                "diff_summary": None if self.diff is None else self.diff.summary,
                "path": self.path,
            }
        )

    @property
    def diff_heading(self) -> str:
        assert self.diff is not None
        return f"{self.diff.title}: {self.diff.summary_text}"

    # -- HTML ------------------------------------------------------------------------------
    def html(self) -> str:
        """The whole report as one HTML document."""
        title = f"D365 metadata sync: session {self.session.session_id}"
        return h.page(self._clean(title), self.body())

    def body(self) -> str:
        """The report without the document around it (a notebook shows this)."""
        from d365sync_nb.views import charts, frames  # pandas + matplotlib: not at import

        s = self.session
        parts = [
            '<h1 style="font-size:20px;margin:0 0 4px">D365 metadata sync report</h1>',
            f'<div style="{h.MUTED}">Environment {h.esc(self.environment)} · session started '
            f"{h.esc(s.started_at.strftime('%Y-%m-%d %H:%M:%S'))} UTC by "
            f"{h.esc(s.initiated_by)}</div>",
            h.session_card(s),
            self._section("Phases"),
            h.svg_image(charts.phase_timeline(frames.phases_frame(s)), "phase timeline"),
            self._section("Diagnosis"),
            self._diagnosis(),
            self._section("Requests over time"),
            *self._request_charts(),
            self._section("HTTP record"),
            self._http(),
            self._section("Last failed requests (give support the activity id)"),
            self._requests(self.diagnosis.failed_requests),
        ]
        if self.diagnosis.retried_requests:
            parts += [self._section("Last retried requests"),
                      self._requests(self.diagnosis.retried_requests)]  # fmt: skip
        if self.diff is not None:
            parts += [self._section("Changes since the version before"), self._diff()]
        # the texts are redacted; the charts (images of figures, no free text) are not scanned
        return "\n".join(p if p.startswith(h.IMAGE) else self._clean(p) for p in parts)

    @staticmethod
    def _section(name: str) -> str:
        return f'<h2 style="{SECTION}">{h.esc(name)}</h2>'

    def _diagnosis(self) -> str:
        d = self.diagnosis
        out = [f"<p><b>{h.esc(d.verdict)}</b></p>"]
        if d.findings:
            out.append("<ul>" + "".join(f"<li>{h.esc(f)}</li>" for f in d.findings) + "</ul>")
        return "".join(out)

    def _request_charts(self) -> list[str]:
        if self.log is None:
            return [f'<p style="{h.MUTED}"><i>{h.esc(NO_LOG)}</i></p>']
        if not self.log:
            return [f'<p style="{h.MUTED}"><i>No request was sent.</i></p>']
        from d365sync_nb.views import charts, frames

        frame = frames.requests_frame(self.log, self.session)
        return [
            h.svg_image(charts.requests_over_time(frame, self.session), "requests over time"),
            h.svg_image(charts.latency_by_endpoint(frame), "latency by endpoint"),
        ]

    def _http(self) -> str:
        http = self.session.http
        latency = http.latency_ms or {}
        limits = http.concurrency or {}
        rows: list[dict[str, Any]] = [
            {"figure": "requests (attempts)", "value": count(http.requests)},
            {"figure": "retries", "value": count(http.retries)},
            *(
                {"figure": f"answers {code}", "value": count(n)}
                for code, n in sorted(http.by_status.items())
            ),
            {"figure": "without an answer", "value": count(http.transport_errors)},
            {"figure": "waits before retries", "value": duration(http.retry_wait_seconds)},
            {"figure": "bytes received", "value": count(http.bytes_received)},
            *(
                {"figure": f"latency {key}", "value": f"{latency[key]:.0f} ms"}
                for key in ("p50", "p95", "p99", "max")
                if latency.get(key) is not None
            ),
            *(
                {"figure": f"concurrency {key}", "value": limits[key]}
                for key in ("start", "min", "final")
                if limits.get(key) is not None
            ),
        ]
        phases = [
            {"phase": phase, **figures.model_dump()}
            for phase, figures in self.session.http.by_phase.items()
        ]
        return h.table(rows) + (h.table(phases) if phases else "")

    @staticmethod
    def _requests(rows: Iterable[dict[str, Any]]) -> str:
        cells = [
            {
                "started_at": r["started_at"],
                "phase": r.get("phase") or "",
                "endpoint": r["endpoint"],
                "answer": r["status"] or r["error"],
                "activity_id": r["activity_id"] or "–",
                "request_id": r["request_id"],
            }
            for r in rows
        ]
        return h.table(cells, REQUEST_CELLS)

    def _diff(self) -> str:
        assert self.diff is not None
        rows = [
            {"kind": kind, **figures} for kind, figures in self.diff.summary.items()
        ]
        return f"<p>{h.esc(self.diff_heading)}</p>" + h.table(rows)

    def _clean(self, value: Any) -> Any:
        return redact(value, self.secrets)
