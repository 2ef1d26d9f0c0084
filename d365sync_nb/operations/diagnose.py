"""``diagnose``: why a session was slow or failed (verdict, what to do, failed requests)."""

from __future__ import annotations

from typing import Any

from d365sync_nb import diagnostics
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.operations.checks import SyncWindowsView
from d365sync_nb.operations.common import SESSION_ID
from d365sync_nb.operations.spec import Arg, Operation
from d365sync_nb.operations.views import DiagnosisResult


def call(
    manager: Any, session_id: str | None, history: bool = False
) -> DiagnosisResult | SyncWindowsView:
    if history:  # when syncs go best, from every recorded session
        if session_id is not None:
            raise ConfigurationError("--history reads every session: give no session id")
        return SyncWindowsView(diagnostics.sync_windows(manager.get_session_history(limit=1000)))
    session, log = diagnostics.session_with_log(manager, manager.find_session_id(session_id))
    return DiagnosisResult(diagnostics.diagnose(session, log), session, log)


OPERATION = Operation(
    name="diagnose",
    summary="why a session was slow or failed: verdict, what to do, failed requests, charts",
    doc="Why a session (the latest when no id) was slow or failed: a one-line verdict "
    '("throttled 8 s (158 x 429, ...)"), what to do, the failed requests with their support '
    "ids, and (in a notebook) the charts of its requests.",
    args=(
        SESSION_ID,
        Arg(
            "history",
            "when syncs of this environment go best instead: per hour of day (UTC), "
            "median duration, 429 and failure rates, a suggested window",
            kind=bool,
            default=False,
        ),
    ),
    call=call,
    json_help="the diagnosis as one JSON object",
)
