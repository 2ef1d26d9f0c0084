"""``phases``: one row per phase of a session."""

from __future__ import annotations

from typing import Any

from d365sync_nb.operations.common import SESSION_ID
from d365sync_nb.operations.spec import Operation
from d365sync_nb.operations.views import PhasesView


def call(manager: Any, session_id: str | None) -> PhasesView:
    return PhasesView(manager.get_sync_session(manager.find_session_id(session_id)))


OPERATION = Operation(
    name="phases",
    summary="one row per phase of a session: status, items, seconds, note, error",
    doc="One row per phase of a session (the latest when no id).",
    args=(SESSION_ID,),
    call=call,
    csv=True,
)
