"""Arguments several operations share (declared once, with one help text)."""

from __future__ import annotations

from d365sync_nb.operations.spec import Arg

MAX_LIMIT = 1000
DATE_FORMS = "a date or time like 2026-11-30 or 2026-11-30T14:00 (UTC unless it has an offset)"
PATTERN_HELP = "case-insensitive substring, or a glob such as 'Cust*V3'"
ENTITY_HELP = "data entity, public entity or collection name (any case)"
VERSION_HELP = (
    "a global version id (as in history) or an application version, e.g. 10.0.42 "
    "(default: the current one)"
)

SESSION_ID = Arg(
    "session_id",
    "session id or a unique prefix of 4+ characters (default: the latest session)",
    positional=True,
    metavar="ID",
)
VERSION = Arg("version", VERSION_HELP, metavar="V")


def limit(what: str, default: int = 20, *, config: str | None = None,
          keyword_only: bool | None = None) -> Arg:  # fmt: skip
    """A ``--limit`` of 1 to :data:`MAX_LIMIT` ``what``."""
    return Arg(
        "limit",
        f"{what} to show, 1 to {MAX_LIMIT} (default {default})",
        kind=int,
        default=default,
        minimum=1,
        maximum=MAX_LIMIT,
        config_default=config,
        keyword_only=keyword_only,
    )
