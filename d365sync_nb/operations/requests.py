"""``requests``: a session's request log, one row per attempt."""

from __future__ import annotations

from typing import Any

from d365sync_nb.models import PHASES
from d365sync_nb.operations.common import SESSION_ID
from d365sync_nb.operations.spec import Arg, Operation
from d365sync_nb.operations.views import RequestLogView


def call(manager: Any, session_id: str | None, status: str | None, phase: str | None
         ) -> RequestLogView:  # fmt: skip
    sid = manager.find_session_id(session_id)
    rows = manager.get_request_log(
        sid, status=status, phase=None if phase is None else phase.strip().lower()
    )
    return RequestLogView(manager.get_sync_session(sid), rows)


OPERATION = Operation(
    name="requests",
    summary="a session's request log, one row per attempt (--status S, --phase P)",
    doc="The request log of a session (the latest when no id): one row per attempt in the "
    "order sent, with its phase, endpoint class, status (none: no complete answer), error, "
    "attempt number, latency, size, why it was retried, and the ids support asks for. Only "
    "the most recent sessions keep a log (RequestLogUnavailable for older ones; their totals "
    "stay in session.http).",
    args=(
        SESSION_ID,
        Arg(
            "status",
            "only attempts with this answer: a code (429), a class (5xx), 'error' "
            "(no usable answer) or 'retried'",
            keyword_only=False,
        ),
        Arg(
            "phase",
            "only this phase's attempts: " + ", ".join(p.value for p in PHASES),
            keyword_only=False,
        ),
    ),
    call=call,
    csv=True,
    json_help="a JSON list, every column",
)
