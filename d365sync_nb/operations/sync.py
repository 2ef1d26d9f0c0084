"""The arguments of a sync (``d365sync sync``, ``%d365sync start``), declared once. Starting a
sync is not a plain operation: each surface shows the session live in its own way (the
terminal's progress lines, the notebook's panel, a tool's session id)."""

from __future__ import annotations

from d365sync_nb.models import STRATEGY_DESCRIPTIONS
from d365sync_nb.operations.spec import Arg

STRATEGY = Arg(
    "strategy",
    "what to sync (default full; in a notebook D365Sync.default_strategy), one of: "
    + "; ".join(f"{s.value}: {d}" for s, d in STRATEGY_DESCRIPTIONS.items()),
    enum=tuple(s.value for s in STRATEGY_DESCRIPTIONS),
    config_default="default_strategy",
)
VERSION = Arg(
    "version",
    "the global version id to sync (default: detect the one the environment runs now)",
    kind=int,
    metavar="ID",
)
FORCE = Arg("force", "sync even when already up to date", kind=bool, default=False)
LANGUAGES = Arg(
    "languages",
    "the languages to sync labels in, comma separated, e.g. en-us,de,da (default: the "
    "profile's languages, else its language); a language added later fetches only its labels",
    metavar="LANGS",
)
ARGS = (STRATEGY, VERSION, FORCE, LANGUAGES)
