"""``%d365sync requests``: a session's request log (one row per attempt) as a DataFrame."""

from __future__ import annotations

import argparse

import pandas as pd

from d365sync_nb.models import PHASES
from d365sync_nb.notebook import tables
from d365sync_nb.notebook.state import state

NAME = "requests"
SUMMARY = "a session's request log, one row per attempt (--status S, --phase P)"
STATUS_HELP = (
    "only these attempts: a code (429), a class (5xx), 'error' (no usable answer) or 'retried' "
    "(attempts that were retried)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "session_id", nargs="?", help="session id or unique prefix (default: the latest)"
    )
    parser.add_argument("--status", help=STATUS_HELP)
    parser.add_argument(
        "--phase", help=f"only this phase's attempts: {', '.join(p.value for p in PHASES)}"
    )


def requests(
    session_id: str | None = None, status: str | None = None, phase: str | None = None
) -> pd.DataFrame:
    """The request log of a session (the latest when no id): one row per attempt in the order
    sent, with its phase, endpoint class, status (``<NA>``: no complete answer), error, attempt
    number, latency, size, why it was retried, and the ids support asks for.

    ``status``: a code (``"429"``), a class (``"5xx"``), ``"error"`` or ``"retried"``;
    ``phase``: a phase name. Only the most recent sessions keep a log (RequestLogUnavailable
    for older ones; their totals stay in ``session.http``).
    """
    manager, _ = state.require()
    sid = state.resolve_session(session_id)
    rows = manager.get_request_log(
        sid, status=status, phase=None if phase is None else phase.strip().lower()
    )
    return tables.requests_frame(rows, manager.get_sync_session(sid))


def run(args: argparse.Namespace) -> pd.DataFrame:
    return requests(args.session_id, args.status, args.phase)
