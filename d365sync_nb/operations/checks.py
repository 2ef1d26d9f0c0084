"""``checks``: the version checks a watch recorded (``d365sync watch``), newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from d365sync_nb import render
from d365sync_nb.diagnostics import SyncWindows
from d365sync_nb.operations.common import DATE_FORMS, limit
from d365sync_nb.operations.spec import Arg, Operation
from d365sync_nb.store.checks import CheckAction, CheckRecord

ACTIONS = tuple(a.value for a in CheckAction)


@dataclass
class ChecksView:
    """Recorded checks: when, the version seen, what was done, the session, notifications."""

    checks: list[CheckRecord]
    title = None
    columns = ("checked_at", "action", "version", "application", "session_id", "notified",
               "reason")  # fmt: skip

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "checked_at": c.checked_at.strftime("%Y-%m-%d %H:%M:%S"),
                "action": c.action.value,
                "version": c.global_version_id,
                "application": c.application_version,
                "session_id": c.session_id,
                "notified": f"{c.notified}"
                + (f" ({c.notify_failed} failed)" if c.notify_failed else ""),
                "reason": c.error or c.reason,
            }
            for c in self.checks
        ]

    def text(self) -> str:
        if not self.checks:
            return "No check recorded yet: `d365sync watch --once` (or --every 15m) records them"
        return render.table(self.rows(), self.columns)

    def to_json(self) -> Any:
        return [c.to_dict() for c in self.checks]


@dataclass
class SyncWindowsView:
    """When syncs of an environment go best (``diagnose --history``)."""

    advice: SyncWindows
    title = None

    def text(self) -> str:
        return str(self.advice)

    def to_json(self) -> Any:
        return self.advice.to_dict()


def call(manager: Any, limit: int, action: str | None, since: str | datetime | None) -> ChecksView:
    moment = _moment(since)
    return ChecksView(manager.store.checks.load(limit=limit, action=action, since=moment))


def _moment(value: str | datetime | None) -> datetime | None:
    from datetime import UTC

    from d365sync_nb.errors import ConfigurationError

    if value is None or isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigurationError(f"--since: {DATE_FORMS}, not {value[:40]!r}") from None
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


OPERATION = Operation(
    name="checks",
    summary="the watch's version checks, newest first (--action --since)",
    doc="The version checks a watch recorded, newest first: when, the version the environment "
    "ran, what was done (synced, up_to_date, failed, cancelled, skipped_running, backing_off), "
    "the session it started and the notifications sent.",
    args=(
        limit("checks", keyword_only=False),
        Arg(
            "action",
            "only checks that did this: " + ", ".join(ACTIONS),
            choices=ACTIONS,
            keyword_only=False,
        ),
        Arg(
            "since",
            f"only checks at or after this: {DATE_FORMS}",
            metavar="DATE",
            kind=datetime,
            keyword_only=False,
        ),
    ),
    call=call,
    csv=True,
    json_help="a JSON list of the checks",
)
