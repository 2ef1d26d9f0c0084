"""``sessions``: the sessions running now (in this process: a notebook's or a server's)."""

from __future__ import annotations

from typing import Any

from d365sync_nb.operations.spec import Operation
from d365sync_nb.operations.views import SessionsView


def call(manager: Any) -> SessionsView:
    return SessionsView(manager.get_active_sessions())


OPERATION = Operation(
    name="sessions",
    summary="running sessions: progress, phase, current item, ETA",
    doc="Running sessions: progress, phase, current item, ETA, throughput.",
    args=(),
    call=call,
    cli=False,  # a CLI process runs no session but its own sync
)
