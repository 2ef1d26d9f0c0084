"""``entities | fields | relations | enums | members | labels``: the cached metadata of one
version as tables (one operation each)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from d365sync_nb.operations.common import ENTITY_HELP, PATTERN_HELP, VERSION
from d365sync_nb.operations.spec import REQUIRED, Arg, Operation
from d365sync_nb.operations.views import TableResult

PATTERN = Arg("pattern", PATTERN_HELP, positional=True)
ENTITY = Arg("entity", ENTITY_HELP, positional=True, default=REQUIRED)
LANGUAGE_HELP = "the labels' language, e.g. de (default: the connection's language)"
LANGUAGE = Arg("language", LANGUAGE_HELP, metavar="L")
LANGUAGES = Arg(
    "language",
    LANGUAGE_HELP + "; give it several times (or comma separated) for one label column each",
    metavar="L",
    repeat=True,
)


def _table(method: str) -> Callable[..., TableResult]:
    def call(manager: Any, **values: Any) -> TableResult:
        return TableResult(getattr(manager.explorer, method)(**values))

    return call


def _operation(name: str, summary: str, doc: str, *args: Arg) -> Operation:
    return Operation(
        name=name, summary=summary, doc=doc, args=(*args, VERSION), call=_table(name), csv=True,
        json_help="a JSON list of the rows",
    )  # fmt: skip


OPERATIONS = (
    _operation(
        "entities", "data entities: names, category, flags, field count, label",
        "Data entities: public entity and collection names, category, read-only, data-service "
        "and data-management flags, field count, label. pattern matches any of the three names.",
        PATTERN, Arg("category", "only this entity category, e.g. Master"),
    ),
    _operation(
        "fields", "an entity's fields: type, key, mandatory, label, enumeration",
        "One row per field of an entity: types, key, mandatory, allow edit, dimension, label id "
        "and text, and the enumeration of an enum field. Several languages: one label column "
        "each (label_en-us, label_de).",
        ENTITY, LANGUAGES,
    ),
    _operation(
        "relations", "an entity's navigation properties (relations)",
        "An entity's navigation properties: related entity, cardinality, constraints.",
        ENTITY,
    ),
    _operation(
        "enums", "enumerations with their label and member count",
        "Enumerations (name or label matching pattern): label and member count.",
        PATTERN,
    ),
    _operation(
        "members", "an enumeration's members: value and label",
        "The members of an enumeration: value, label id and text.",
        Arg("enum", "enumeration name, e.g. NoYes", positional=True, default=REQUIRED),
    ),
    _operation(
        "labels", "the labels a version uses: text and status (--missing)",
        "The labels a version uses, with text and status (found, empty, missing, failed, "
        "not_synced) in a language; missing: only those without a text; untranslated: those "
        "with a text in the connection's language but none in --language. pattern matches the "
        "id or the text.",
        PATTERN, Arg("missing", "only labels without a text", kind=bool, default=False),
        LANGUAGE,
        Arg("untranslated", "only labels with a text in the connection's language but none "
            "in --language", kind=bool, default=False),
    ),
    _operation(
        "coverage", "label coverage per language: found, empty, missing, not synced",
        "Per language (default: the languages the version was synced in): how many of the "
        "labels the version references are found, empty, missing, failed or not synced.",
        Arg("language", "the languages to count, several times or comma separated (default: "
            "those the version was synced in)", metavar="L", repeat=True),
    ),
)  # fmt: skip
