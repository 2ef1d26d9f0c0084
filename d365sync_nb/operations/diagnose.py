"""``diagnose``: why a session was slow or failed (verdict, what to do, failed requests)."""

from __future__ import annotations

from typing import Any

from d365sync_nb import diagnostics
from d365sync_nb.operations.common import SESSION_ID
from d365sync_nb.operations.spec import Operation
from d365sync_nb.operations.views import DiagnosisResult


def call(manager: Any, session_id: str | None) -> DiagnosisResult:
    session, log = diagnostics.session_with_log(manager, manager.find_session_id(session_id))
    return DiagnosisResult(diagnostics.diagnose(session, log), session, log)


OPERATION = Operation(
    name="diagnose",
    summary="why a session was slow or failed: verdict, what to do, failed requests, charts",
    doc="Why a session (the latest when no id) was slow or failed: a one-line verdict "
    '("throttled 8 s (158 x 429, ...)"), what to do, the failed requests with their support '
    "ids, and (in a notebook) the charts of its requests.",
    args=(SESSION_ID,),
    call=call,
    json_help="the diagnosis as one JSON object",
)
