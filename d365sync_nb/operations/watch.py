"""The arguments of a watch (``d365sync watch``, ``%d365sync watch``), declared once. Like a
sync, a watch is not a plain operation: it runs until stopped, and each surface shows it its
own way (event lines in a terminal, a status line and live panel in a notebook)."""

from __future__ import annotations

from d365sync_nb.automation.version_check import DEFAULT_STRATEGY
from d365sync_nb.models import STRATEGY_DESCRIPTIONS
from d365sync_nb.operations.spec import Arg

EVERY = Arg("every", "check every DURATION: 30s, 15m, 1h, 1d ...", metavar="DURATION")
CRON = Arg("cron", 'check at the times of a cron expression (UTC), e.g. "0 2 * * *"',
           metavar="EXPR")  # fmt: skip
ONCE = Arg("once", "one check (and its sync, if due), then stop", kind=bool, default=False)
STRATEGY = Arg(
    "strategy",
    f"what a due sync fetches (default {DEFAULT_STRATEGY.value}), one of: "
    + "; ".join(f"{s.value}: {d}" for s, d in STRATEGY_DESCRIPTIONS.items()),
    enum=tuple(s.value for s in STRATEGY_DESCRIPTIONS),
    default=DEFAULT_STRATEGY.value,
)
NOTIFY = Arg(
    "notify",
    "where to tell of a new version or a failure: teams:URL, slack:URL, webhook:URL or "
    "jupyter (repeatable; a profile's notify list adds to them)",
    metavar="TARGET",
)  # repeatable: the surfaces add it with action="append"
RETRY_AFTER = Arg(
    "retry_after",
    "wait this long after a failed sync before retrying; doubled after each further failure "
    "(default 60s)",
    metavar="DURATION",
    default="60s",
)
SCHEDULE = (EVERY, CRON, ONCE)  # mutually exclusive
OPTIONS = (STRATEGY, RETRY_AFTER)


def add_notify(parser: object) -> None:
    """``--notify TARGET``, repeatable."""
    parser.add_argument(  # type: ignore[attr-defined]
        NOTIFY.cli_flag, dest=NOTIFY.name, action="append", metavar=NOTIFY.metavar,
        help=NOTIFY.help,
    )  # fmt: skip
