"""Static HTML of the view models: what a saved notebook or a report file shows without a
kernel, a widget manager or the package.

Inline styles only (no script, no stylesheet, no class a reader's CSS must know: GitHub and
nbviewer strip the first two), and no colour for ordinary text, so it reads in a light and a
dark theme alike; status colours are mid-tones that stand out on both. Every figure is also
written as text, so a viewer that drops the styles still tells the whole story.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

from d365sync_nb.models import SyncSession
from d365sync_nb.views.format import figure
from d365sync_nb.views.session import NOT_RUN, PhaseView, SessionView

STATUS_COLORS = {
    "completed": "#2e9d4e",
    "running": "#2f80ed",
    "failed": "#e0443e",
    "cancelled": "#d99a00",
    "skipped": "#8c8c8c",
    "reused": "#5fa86f",
    "pending": "#8c8c8c",
    NOT_RUN: "#8c8c8c",
}
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:13px"
BORDER = "rgba(128,128,128,.4)"
TRACK = "rgba(128,128,128,.25)"
MUTED = "opacity:.75"
CARD = (
    f"{FONT};line-height:1.45;border:1px solid {BORDER};border-radius:6px;"
    "padding:8px 12px;margin:4px 0;max-width:820px"
)
IMAGE = "<img "  # how an inlined chart starts
CELL = "padding:1px 8px 1px 0;text-align:left;vertical-align:middle;border:none"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def status_word(status: str) -> str:
    """A status in its colour (bold)."""
    return f'<b style="color:{STATUS_COLORS.get(status, "inherit")}">{esc(status)}</b>'


def bar(percent: float, status: str, width: int = 160) -> str:
    """A progress bar of two nested blocks (no widget, no script)."""
    filled = max(0.0, min(100.0, percent))
    color = STATUS_COLORS.get(status, STATUS_COLORS["pending"])
    return (
        f'<div style="display:inline-block;width:{width}px;height:9px;background:{TRACK};'
        f'border-radius:4px;overflow:hidden;vertical-align:middle">'
        f'<div style="width:{filled:.1f}%;height:100%;background:{color}"></div></div>'
    )


def phase_row(p: PhaseView) -> str:
    detail = p.error or p.note or ""
    cells = [
        esc(p.name),
        bar(p.percent, p.label),
        status_word(p.label),
        esc(p.items),
        esc(p.seconds),
        f'<span style="{MUTED}">{esc(detail)}</span>' if detail else "",
    ]
    return "<tr>" + "".join(f'<td style="{CELL}">{c}</td>' for c in cells) + "</tr>"


def session_card(session: SyncSession, *, title: str = "D365 metadata sync") -> str:
    """A session as one static block: headline, the 8 phases (bar, status, items, seconds),
    the requests and the outcome sentence (the sentence of where it stands while it runs)."""
    view = SessionView(session)
    s = session
    status = s.status.value
    head = (
        f"<b>{esc(title)}</b> · {esc(s.strategy.value)} · version {esc(s.global_version_id)} · "
        f"<code>{esc(s.session_id)}</code> · {status_word(status)} · {esc(view.progress)}"
    )
    rows = "".join(phase_row(p) for p in view.phases)
    note = f'<div style="{MUTED}">Note: {esc(s.message)}</div>' if s.message else ""
    closing = view.outcome or view.sentence
    closing_style = f"color:{STATUS_COLORS['failed']}" if status == "failed" else ""
    return (
        f'<div style="{CARD}" data-d365sync-session="{esc(s.session_id)}" '
        f'data-d365sync-status="{esc(status)}">'
        f"<div>{head}</div>{note}"
        f'<table style="border-collapse:collapse;margin:6px 0;border:none">{rows}</table>'
        f"<div>Requests: {esc(view.http_summary)}</div>"
        f'<div style="{closing_style}"><b>{esc(closing)}</b></div>'
        "</div>"
    )


def table(rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None) -> str:
    """Dict rows as a bordered HTML table (figures through :func:`figure`)."""
    if not rows:
        return f'<p style="{MUTED}"><i>(none)</i></p>'
    cols = list(columns or rows[0].keys())
    cell = f"padding:2px 8px;border:1px solid {BORDER};text-align:left"
    head = "".join(f'<th style="{cell}">{esc(c)}</th>' for c in cols)
    body = "".join(
        "<tr>" + "".join(f'<td style="{cell}">{esc(figure(r.get(c)))}</td>' for c in cols) + "</tr>"
        for r in rows
    )
    return (
        f'<table style="border-collapse:collapse;{FONT};margin:4px 0">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def svg_image(fig: Any, alt: str) -> str:
    """A matplotlib figure inlined as an SVG ``<img>`` (a data URI): byte-stable for the same
    figure (no date, fixed ids), nothing fetched."""
    from matplotlib import rc_context

    buffer = io.BytesIO()
    with rc_context({"svg.hashsalt": "d365sync", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<img alt="{esc(alt)}" style="max-width:100%;background:#fff;border-radius:4px" '
        f'src="data:image/svg+xml;base64,{data}"/>'
    )


def page(title: str, body: str) -> str:
    """A whole self-contained HTML document (no script, no external resource)."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{esc(title)}</title></head>\n"
        f'<body style="{FONT};max-width:980px;margin:24px auto;padding:0 16px">\n'
        f"{body}\n</body></html>\n"
    )
