"""``compare``: two sessions side by side, phase by phase."""

from __future__ import annotations

from typing import Any

from d365sync_nb import diagnostics
from d365sync_nb.operations.spec import REQUIRED, Arg, Operation
from d365sync_nb.operations.views import ComparisonView


def call(manager: Any, a: str, b: str) -> ComparisonView:
    first = manager.get_sync_session(manager.find_session_id(a))
    second = manager.get_sync_session(manager.find_session_id(b))
    return ComparisonView(first, second, diagnostics.compare(first, second))


OPERATION = Operation(
    name="compare",
    summary="two sessions phase by phase: seconds, requests, retries, 429s (B/A ratios)",
    doc="One row per phase: status, seconds, requests, retries, 429s and items of session a "
    "and session b side by side, with seconds_ratio and requests_ratio (b / a).",
    args=(
        Arg(
            "a",
            "the first session (the baseline): an id or a unique prefix",
            positional=True,
            default=REQUIRED,
            metavar="A",
        ),
        Arg(
            "b",
            "the second session: an id or a unique prefix",
            positional=True,
            default=REQUIRED,
            metavar="B",
        ),
    ),
    call=call,
    csv=True,
    json_help='{"a": id, "b": id, "phases": [...]}',
)
