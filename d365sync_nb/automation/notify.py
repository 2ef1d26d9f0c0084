"""Notifications of a watch: Teams (Workflows webhook, Adaptive Card), Slack, generic webhook
JSON, and JupyterLab (through a sink the notebook registers).

A notification failure never fails a sync: each delivery is retried a bounded number of times,
logged and counted. Webhook URLs carry signatures, so they are secrets: a target prints as
``teams:https://host/…``, and every message that could hold a URL is redacted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from d365sync_nb.errors import ConfigurationError
from d365sync_nb.redaction import MASK, redact

log = logging.getLogger(__name__)

KINDS = ("teams", "slack", "webhook", "jupyter")
EVENTS = ("version_changed", "sync_completed", "sync_failed")
ATTEMPTS = 3  # per notification and target
RETRY_DELAYS = (1.0, 3.0)  # seconds before the 2nd and 3rd attempts
TIMEOUT_SECONDS = 10.0
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
TITLES = {
    "version_changed": "New version synced",
    "sync_completed": "Sync completed",
    "sync_failed": "Sync failed",
    "sync_cancelled": "Sync cancelled",  # only a notebook's background start tells of it
}

JupyterSink = Callable[["Notice"], None]
_jupyter_sink: JupyterSink | None = None
_known_urls: set[str] = set()  # every target URL parsed in this process: redacted in logs


@dataclass
class Notice:
    """What one notification says (the generic webhook JSON, plus what the cards show)."""

    event: str
    environment: str  # the base URL (never carries credentials: config refuses them)
    global_version_id: int | None = None
    application_version: str | None = None
    session: dict[str, Any] | None = None  # session_id, status, strategy, duration, counts
    changes: dict[str, Any] | None = None  # summary (text), by_kind, from_global_version_id
    verdict: str | None = None
    error: str | None = None
    activity_id: str | None = None

    def to_webhook(self) -> dict[str, Any]:
        """The generic webhook body."""
        return asdict(self)

    @property
    def title(self) -> str:
        return f"{TITLES[self.event]}: {urlsplit(self.environment).hostname or self.environment}"

    def lines(self) -> list[str]:
        """The facts worth a line each, in the order the cards show them."""
        out = []
        if self.global_version_id is not None:
            app = f" (application {self.application_version})" if self.application_version else ""
            out.append(f"Version {self.global_version_id}{app}")
        if self.changes:
            out.append(f"What changed: {self.changes['summary']}")
        if self.session:
            s = self.session
            out.append(
                f"Session {s['session_id']}: {s['status']}, {s['strategy']}, "
                f"{s['duration_seconds']:.0f} s"
            )
        if self.error:
            out.append(f"Error: {self.error}")
        if self.verdict:
            out.append(f"Diagnosis: {self.verdict}")
        if self.activity_id:
            out.append(f"Activity id (for support): {self.activity_id}")
        return out

    def text(self) -> str:
        return "\n".join([self.title, *self.lines()])


@dataclass(frozen=True)
class NotifyTarget:
    """``teams:URL``, ``slack:URL``, ``webhook:URL`` or ``jupyter``."""

    kind: str
    url: str | None = None

    @classmethod
    def parse(cls, text: str) -> NotifyTarget:
        raw = str(text).strip()
        kind, _, url = raw.partition(":")
        kind = kind.lower()
        if kind == "jupyter" and not url:
            return cls("jupyter")
        if kind not in KINDS or kind == "jupyter":
            raise ConfigurationError(
                f"Bad notification target {_shown(raw)!r}: give teams:URL, slack:URL, "
                "webhook:URL or jupyter"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"Bad notification target {kind}:{_shown(url)}: the URL must start with https://"
            )
        _known_urls.add(url)
        return cls(kind, url)

    def __str__(self) -> str:
        if self.url is None:
            return self.kind
        parts = urlsplit(self.url)
        return f"{self.kind}:{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"

    def __repr__(self) -> str:
        return f"NotifyTarget({str(self)!r})"

    @property
    def secrets(self) -> set[str]:
        return {self.url} if self.url else set()

    def payload(self, notice: Notice) -> dict[str, Any]:
        if self.kind == "teams":
            return teams_payload(notice)
        if self.kind == "slack":
            return slack_payload(notice)
        return notice.to_webhook()


def parse_targets(texts: Iterable[str]) -> list[NotifyTarget]:
    return [NotifyTarget.parse(t) for t in texts]


def teams_payload(notice: Notice) -> dict[str, Any]:
    """A Teams Workflows webhook message carrying an Adaptive Card 1.4."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": notice.title, "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": "Attention" if notice.event == "sync_failed" else "Good"},
        {"type": "TextBlock", "text": notice.environment, "isSubtle": True, "spacing": "None",
         "wrap": True},
    ]  # fmt: skip
    facts = [
        {"title": title, "value": value}
        for title, value in (
            ("Version", _version(notice)),
            ("Session", notice.session and notice.session["session_id"]),
            ("Status", notice.session and notice.session["status"]),
            ("Activity id", notice.activity_id),
        )
        if value
    ]
    if facts:
        body.append({"type": "FactSet", "facts": facts})
    for heading, text in (
        ("What changed", notice.changes and notice.changes["summary"]),
        ("Error", notice.error),
        ("Diagnosis", notice.verdict),
    ):
        if text:
            body.append({"type": "TextBlock", "text": f"**{heading}:** {text}", "wrap": True})
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": ADAPTIVE_CARD,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }


def slack_payload(notice: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the fallback) plus blocks."""
    lines = notice.lines()
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": notice.environment}]},
    ]
    if lines:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}}
        )
    return {"text": notice.text(), "blocks": blocks}


def _version(notice: Notice) -> str | None:
    if notice.global_version_id is None:
        return None
    app = f" (application {notice.application_version})" if notice.application_version else ""
    return f"{notice.global_version_id}{app}"


# -- delivery ----------------------------------------------------------------------------------
def set_jupyter_sink(sink: JupyterSink | None) -> JupyterSink | None:
    """Where ``jupyter`` notifications go (the notebook registers one); returns the previous."""
    global _jupyter_sink
    previous, _jupyter_sink = _jupyter_sink, sink
    return previous


class NotifyError(Exception):
    """A notification could not be delivered (its message is redacted, one line)."""


async def deliver(
    target: NotifyTarget,
    notice: Notice,
    *,
    delays: Sequence[float] = RETRY_DELAYS,
    client: httpx.AsyncClient | None = None,
) -> int:
    """Send one notification, retrying up to ``len(delays)`` times; returns the attempts used.
    Raises NotifyError (redacted) when every attempt failed."""
    if target.kind == "jupyter":
        if _jupyter_sink is None:
            raise NotifyError("jupyter notifications need a notebook (%d365sync watch)")
        try:
            _jupyter_sink(notice)
        except Exception as exc:
            raise NotifyError(f"the notebook could not show it ({_one_line(exc)})") from None
        return 1
    assert target.url is not None
    body = target.payload(notice)
    owned = client is None
    http = client or httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False)
    problem = ""
    try:
        for attempt in range(1, len(delays) + 2):
            try:
                response = await http.post(target.url, json=body)
                if 200 <= response.status_code < 300:
                    return attempt
                problem = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    break  # the body or the URL is wrong: retrying will not help
            except httpx.HTTPError as exc:
                problem = _one_line(exc) or type(exc).__name__
            if attempt <= len(delays):
                await asyncio.sleep(delays[attempt - 1])
    finally:
        if owned:
            await http.aclose()
    message = redact(f"{target}: {problem} after {attempt} attempt(s)", target.secrets)
    raise NotifyError(message)


def _shown(text: str) -> str:
    """A target as an error may echo it: scheme and host only."""
    if "://" not in text:
        return text[:40]
    parts = urlsplit(text)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


def _one_line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split())[:200], _known_urls)


class _RedactWebhooks(logging.Filter):
    """httpx logs each request's URL at INFO: mask the webhook URLs in those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _known_urls and record.args:
            record.msg = redact(record.getMessage(), _known_urls)
            record.args = None
        return True


_FILTER = _RedactWebhooks()
for _name in ("httpx", "httpcore"):
    if _FILTER not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_FILTER)

__all__ = [
    "EVENTS",
    "MASK",
    "Notice",
    "NotifyError",
    "NotifyTarget",
    "deliver",
    "parse_targets",
    "set_jupyter_sink",
    "slack_payload",
    "teams_payload",
]
