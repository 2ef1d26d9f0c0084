"""``history``: recorded sync sessions, newest first, filtered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from d365sync_nb.models import SyncStatus, SyncStrategy
from d365sync_nb.operations.common import DATE_FORMS, limit
from d365sync_nb.operations.spec import Arg, Operation
from d365sync_nb.operations.views import SessionsView

STATUSES = tuple(s.value for s in SyncStatus)
STRATEGIES = tuple(s.value for s in SyncStrategy)


def call(manager: Any, **values: Any) -> SessionsView:
    return SessionsView(manager.get_session_history(**values))


OPERATION = Operation(
    name="history",
    summary="recorded sessions, newest first (--status --strategy --since --until --version)",
    doc="Recorded sync sessions, newest first, filtered by outcome, strategy, start time "
    "(since <= started < until) and global version id.",
    args=(
        limit("sessions", config="history_limit", keyword_only=False),
        Arg(
            "status",
            "only sessions with this outcome: " + ", ".join(STATUSES),
            enum=STATUSES,
            keyword_only=False,
        ),
        Arg(
            "strategy",
            "only sessions of this strategy: " + ", ".join(STRATEGIES),
            enum=STRATEGIES,
            keyword_only=False,
        ),
        Arg(
            "since",
            f"only sessions started at or after this: {DATE_FORMS}",
            metavar="DATE",
            kind=datetime,
            keyword_only=False,
        ),
        Arg(
            "until",
            f"only sessions started before this (exclusive): {DATE_FORMS}",
            metavar="DATE",
            kind=datetime,
            keyword_only=False,
        ),
        Arg(
            "version",
            "only sessions of this global version id",
            kind=int,
            metavar="ID",
            keyword_only=False,
        ),
    ),
    call=call,
    csv=True,
    json_help="a JSON list of the sessions",
)
