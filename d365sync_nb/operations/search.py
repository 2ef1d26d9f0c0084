"""``search``: full-text search of the cached metadata."""

from __future__ import annotations

from typing import Any

from d365sync_nb.operations.common import limit
from d365sync_nb.operations.spec import REQUIRED, Arg, Operation
from d365sync_nb.operations.views import SearchView


def call(manager: Any, text: str, limit: int) -> SearchView:
    return SearchView(manager.search(text, limit=limit))


OPERATION = Operation(
    name="search",
    summary="search the cached metadata (entities, properties, enumerations, labels)",
    doc="Search cached entities, properties, enumerations and labels (full text, prefix "
    "match), best first.",
    args=(
        Arg(
            "text",
            "words to look for",
            positional=True,
            default=REQUIRED,
            words=True,
            missing="Nothing to search for: give some text, e.g. customer",
        ),
        limit("hits", keyword_only=False),
    ),
    call=call,
    csv=True,
    json_help="a JSON list of the hits",
)
