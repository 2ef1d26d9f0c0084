"""The tables of one cached version: entities, fields, relations, enumerations, members, labels.

A :class:`Catalog` reads one build (the visible build of a version) through a ``query``
function, so it works on this environment's cache and on another one opened read-only alike.
Label texts are those the version was synced with (``build_labels``, per language), else the
cache's label dictionary, in the catalog's language (the connection's unless asked otherwise).
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from d365sync_nb.config import parse_languages
from d365sync_nb.errors import ConfigurationError, NotInCacheError
from d365sync_nb.explorer.table import Column, Table, columns
from d365sync_nb.store.rows import referenced_ids_sql

Query = Callable[[str, Sequence[Any]], list[sqlite3.Row]]

ENTITY_COLUMNS = columns(
    "data_entity public_entity collection category is_read_only:boolean"
    " data_service_enabled:boolean data_management_enabled:boolean fields:Int64 label_id label"
)
FIELD_COLUMNS = columns(
    "name data_type type_name is_key:boolean is_mandatory:boolean allow_edit:boolean"
    " allow_edit_on_create:boolean is_dimension:boolean label_id label enum"
)
RELATION_COLUMNS = columns("name related_entity related_relation_name cardinality constraints")
ACTION_COLUMNS = columns(
    "name binding_kind field_lookup parameters return_type return_is_collection:boolean"
)
ENUM_COLUMNS = columns("name label_id label members:Int64")
MEMBER_COLUMNS = columns("name value:Int64 label_id label configuration_enabled:boolean")
LABEL_COLUMNS = columns("label_id language text status")
UNTRANSLATED_COLUMNS = columns("label_id language status reference_language reference_text")
COVERAGE_COLUMNS = columns(
    "language found:Int64 empty:Int64 missing:Int64 failed:Int64 not_synced:Int64"
    " label_ids:Int64 found_percent:Float64"
)
LABEL_STATUSES = ("found", "empty", "missing", "failed", "not_synced")  # not_synced: no text yet
ENUM_PREFIX = "Microsoft.Dynamics.DataEntities."

# The text and status of a label of the build in a language: the revision the build was synced
# with, else the dictionary's (a build synced before texts were kept per version, or without
# labels). ``{t}``: the row naming the label, ``{b}``: the build id, ``{lang}``: the language.
_BUILD_TEXT = (
    "(SELECT {col} FROM build_labels b JOIN label_texts x ON x.label_id = b.label_id"
    " AND x.language = b.language AND x.rev = b.rev"
    " WHERE b.build_id = {b} AND b.language = {lang} AND b.label_id = {t}.label_id)"
)
_DICT_TEXT = (
    "(SELECT l.{col} FROM labels l WHERE l.label_id = {t}.label_id AND l.language = {lang})"
)


def label_sql(t: str, language: str, build: str = "{t}.build_id", *, col: str = "text") -> str:
    """SQL for a label's text (``col="text"``) or status (``col="status"``) in ``language``
    (checked: a tag of letters, digits and dashes, so it is safe as a literal)."""
    (tag,) = parse_languages(language) or ("",)
    if not tag:
        raise ConfigurationError("Give a language such as en-us or de")
    lang = f"'{tag}'"
    b = build.format(t=t)
    if col == "status":
        own = _BUILD_TEXT.format(col="x.status", b=b, lang=lang, t=t)
        return f"coalesce({own}, {_DICT_TEXT.format(col='status', t=t, lang=lang)})"
    own = _BUILD_TEXT.format(
        col="CASE WHEN x.status IN ('found', 'empty') THEN x.value END", b=b, lang=lang, t=t
    )
    return f"coalesce({own}, {_DICT_TEXT.format(col='value', t=t, lang=lang)})"


class Catalog:
    """Read-only tables of one build, with label texts in ``language``."""

    def __init__(
        self, query: Query, build_id: int, language: str, version: str, *, complete: bool = True
    ) -> None:
        self._query = query
        self.build_id = build_id
        self.language = language
        self.version = version  # how messages name it, e.g. "version 2 (10.0.42.2150)"
        self.complete = complete  # False: a partial sync (entities only), no schemas or enums

    def _partial(self, what: str) -> NotInCacheError:
        return NotInCacheError(
            f"{self.version} was synced without {what} (an entities_only sync): sync it with "
            "strategy full or full_without_labels, or choose a complete version (--version)"
        )

    def _rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return self._query(sql, params)

    # -- entities ------------------------------------------------------------------------------
    def entities(self, pattern: str | None = None, category: str | None = None) -> Table:
        """Data entities with their public names, flags, field count and label text.

        ``pattern`` (case-insensitive substring, or a glob with ``*?[``) matches the data
        entity, public entity or collection name; ``category`` the entity category.
        """
        rows = self._rows(
            "SELECT d.name, d.public_entity_name, d.public_collection_name, d.entity_category,"
            " d.is_read_only, d.data_service_enabled, d.data_management_enabled,"
            " CASE WHEN p.name IS NULL THEN NULL ELSE (SELECT count(*) FROM entity_properties f"
            "  WHERE f.build_id = d.build_id AND f.entity_name = p.name) END,"
            f" d.label_id, {label_sql('d', self.language)}"
            " FROM data_entities d LEFT JOIN public_entities p"
            "  ON p.build_id = d.build_id AND p.name = d.public_entity_name"
            " WHERE d.build_id = ? ORDER BY d.name",
            self.build_id,
        )
        match = matcher(pattern)
        if category is not None:
            wanted = category.strip().lower()
            known = sorted({r[3] for r in rows if r[3]})
            if wanted not in {k.lower() for k in known}:
                raise NotInCacheError(
                    f"No entity category {category!r} in {self.version}; "
                    f"categories: {', '.join(known) or 'none'}"
                )
            rows = [r for r in rows if (r[3] or "").lower() == wanted]
        rows = [r for r in rows if match(r[0], r[1], r[2])]
        return Table.from_rows("entities", ENTITY_COLUMNS, rows, f"entities of {self.version}")

    def resolve_entity(self, name: str) -> str:
        """The public entity named by a data entity, public entity or collection name (any
        case). Raises NotInCacheError naming close matches."""
        text = (name or "").strip()
        if not text:
            raise ConfigurationError("Give an entity: a data entity, public entity or collection")
        if not self.complete:
            raise self._partial("entity schemas")
        public = self._rows(
            "SELECT name, entity_set_name FROM public_entities WHERE build_id = ?", self.build_id
        )
        data = self._rows(
            "SELECT name, public_entity_name, public_collection_name FROM data_entities"
            " WHERE build_id = ?",
            self.build_id,
        )
        publics = {r[0] for r in public}
        names_of: list[tuple[str, str]] = []  # (a name, the public entity it names)
        for entity, collection in public:
            names_of.append((entity, entity))
            if collection:
                names_of.append((collection, entity))
        schemaless: list[tuple[str, str]] = []  # (a name, the data entity without a schema)
        for de, pe, _collection in data:
            if pe in publics:
                names_of.append((de, pe))
            else:
                schemaless += [(de, de), *([(pe, de)] if pe else [])]
        found = pick(text, names_of, "entities")
        if found is not None:
            return found
        no_schema = pick(text, schemaless, "data entities")
        if no_schema is not None:
            raise NotInCacheError(
                f"{no_schema} is a data entity without a public schema in {self.version} "
                "(not enabled for the data service): it has no fields or relations to show"
            )
        names = sorted({*(r[0] for r in public), *(r[1] for r in public if r[1])})
        names += sorted(r[0] for r in data)
        raise NotInCacheError(f"No entity {text!r} in {self.version}" + close_matches(text, names))

    def fields(self, entity: str) -> Table:
        """One row per property of an entity (any of its names), with label text and enum."""
        name = self.resolve_entity(entity)
        return self._owned(
            "fields", FIELD_COLUMNS, self._field_rows("AND entity_name = ?", name), name
        )

    def all_fields(self) -> Table:
        """Every entity's properties, with an ``entity`` column first (for export)."""
        return self._every("fields", "entity", FIELD_COLUMNS, self._field_rows(""))

    def _owned(self, table: str, cols: tuple[Column, ...], rows: list[Any], owner: str) -> Table:
        """The rows of one entity or enumeration (their first column, the owner, dropped)."""
        return Table.from_rows(
            table, cols, [r[1:] for r in rows], f"{table} of {owner} ({self.version})"
        )

    @staticmethod
    def _every(table: str, owner: str, cols: tuple[Column, ...], rows: list[Any]) -> Table:
        """The rows of every entity or enumeration, the owner's column first (for export)."""
        return Table.from_rows(table, columns(owner) + cols, rows, table)

    def _field_rows(self, where: str, *params: Any) -> list[tuple[Any, ...]]:
        rows = self._rows(
            "SELECT entity_name, name, data_type, type_name, is_key, is_mandatory, allow_edit,"
            f" allow_edit_on_create, is_dimension, label_id, {label_sql('t', self.language)}"
            f" FROM entity_properties t WHERE build_id = ? {where} ORDER BY entity_name, ordinal",
            self.build_id,
            *params,
        )
        return [(*r, enum_of(r[2], r[3])) for r in rows]

    # -- relations and actions -----------------------------------------------------------------
    def relations(self, entity: str) -> Table:
        """An entity's navigation properties: related entity, cardinality, constraints."""
        name = self.resolve_entity(entity)
        rows = self._relation_rows("AND entity_name = ?", name)
        return self._owned("relations", RELATION_COLUMNS, rows, name)

    def all_relations(self) -> Table:
        return self._every("relations", "entity", RELATION_COLUMNS, self._relation_rows(""))

    def _relation_rows(self, where: str, *params: Any) -> list[tuple[Any, ...]]:
        rows = self._rows(
            "SELECT entity_name, name, related_entity, related_relation_name, cardinality,"
            f" constraints_json FROM navigation_properties WHERE build_id = ? {where}"
            " ORDER BY entity_name, ordinal",
            self.build_id,
            *params,
        )
        return [(*r[:5], constraints_text(r[5])) for r in rows]

    def actions(self, entity: str) -> Table:
        """An entity's OData actions: binding, parameters, return type."""
        name = self.resolve_entity(entity)
        return self._owned(
            "actions", ACTION_COLUMNS, self._action_rows("AND entity_name = ?", name), name
        )

    def all_actions(self) -> Table:
        return self._every("actions", "entity", ACTION_COLUMNS, self._action_rows(""))

    def _action_rows(self, where: str, *params: Any) -> list[tuple[Any, ...]]:
        rows = self._rows(
            "SELECT entity_name, name, binding_kind, field_lookup, parameters_json,"
            f" return_type_name, return_is_collection FROM entity_actions WHERE build_id = ?"
            f" {where} ORDER BY entity_name, ordinal",
            self.build_id,
            *params,
        )
        return [(*r[:4], parameters_text(r[4]), *r[5:]) for r in rows]

    # -- enumerations --------------------------------------------------------------------------
    def enums(self, pattern: str | None = None) -> Table:
        """Enumerations (name or label matching ``pattern``) with label text and member count."""
        if not self.complete:
            raise self._partial("enumerations")
        rows = self._rows(
            f"SELECT name, label_id, {label_sql('e', self.language)}, (SELECT count(*) FROM"
            " enumeration_members m WHERE m.build_id = e.build_id AND m.enum_name = e.name)"
            " FROM enumerations e WHERE build_id = ? ORDER BY name",
            self.build_id,
        )
        match = matcher(pattern)
        rows = [r for r in rows if match(r[0], r[2])]
        return Table.from_rows("enums", ENUM_COLUMNS, rows, f"enumerations of {self.version}")

    def resolve_enum(self, name: str) -> str:
        text = (name or "").strip()
        if not text:
            raise ConfigurationError("Give an enumeration name, e.g. NoYes")
        if not self.complete:
            raise self._partial("enumerations")
        names = [r[0] for r in self._rows("SELECT name FROM enumerations WHERE build_id = ?",
                                          self.build_id)]  # fmt: skip
        found = pick(text.removeprefix(ENUM_PREFIX), [(n, n) for n in names], "enumerations")
        if found is not None:
            return found
        raise NotInCacheError(
            f"No enumeration {text!r} in {self.version}" + close_matches(text, sorted(names))
        )

    def members(self, enum: str) -> Table:
        """The members of an enumeration: value, label id and text."""
        name = self.resolve_enum(enum)
        return self._owned(
            "members", MEMBER_COLUMNS, self._member_rows("AND enum_name = ?", name), name
        )

    def all_members(self) -> Table:
        return self._every("members", "enumeration", MEMBER_COLUMNS, self._member_rows(""))

    def _member_rows(self, where: str, *params: Any) -> list[sqlite3.Row]:
        return self._rows(
            f"SELECT enum_name, name, value, label_id, {label_sql('t', self.language)},"
            " configuration_enabled FROM enumeration_members t WHERE build_id = ?"
            f" {where} ORDER BY enum_name, ordinal",
            self.build_id,
            *params,
        )

    # -- labels --------------------------------------------------------------------------------
    def _label_rows(self, language: str) -> list[sqlite3.Row]:
        """(label_id, text, status) of every label this version references, in ``language``."""
        return self._rows(
            f"SELECT i.label_id, {label_sql('i', language, '?1')},"
            f" coalesce({label_sql('i', language, '?1', col='status')}, 'not_synced')"
            f" FROM ({referenced_ids_sql('?1')}) i ORDER BY i.label_id",
            self.build_id,
        )

    def labels(self, pattern: str | None = None, *, missing: bool = False) -> Table:
        """The labels this version references: text and status (found, empty, missing from
        the service, failed, or not synced yet). ``pattern`` matches the id or the text;
        ``missing`` keeps the ones without a text."""
        rows = [(r[0], self.language, r[1], r[2]) for r in self._label_rows(self.language)]
        match = matcher(pattern)
        rows = [r for r in rows if match(r[0], r[2]) and not (missing and r[3] == "found")]
        what = "labels without a text" if missing else "labels"
        title = f"{what} of {self.version} in {self.language}"
        return Table.from_rows("labels", LABEL_COLUMNS, rows, title)

    def untranslated(self, reference: str, pattern: str | None = None) -> Table:
        """The labels with a text in ``reference`` (e.g. en-us) but none (empty, missing,
        failed or not synced) in this catalog's language."""
        texts = {r[0]: r[1] for r in self._label_rows(reference) if r[2] == "found"}
        match = matcher(pattern)
        rows = [
            (r[0], self.language, r[2], reference, texts[r[0]])
            for r in self._label_rows(self.language)
            if r[0] in texts and r[2] != "found" and match(r[0], texts[r[0]])
        ]
        title = f"labels of {self.version} with a text in {reference} but none in {self.language}"
        return Table.from_rows("untranslated", UNTRANSLATED_COLUMNS, rows, title)

    def languages(self) -> list[str]:
        """The languages this version has label texts in (its own, else the dictionary's)."""
        own = self._rows(
            "SELECT DISTINCT language FROM build_labels WHERE build_id = ? ORDER BY 1",
            self.build_id,
        )
        if own:
            return [r[0] for r in own]
        return [r[0] for r in self._rows("SELECT DISTINCT language FROM labels ORDER BY 1")]

    def coverage(self, languages: Sequence[str] = ()) -> Table:
        """Per language: how many of the labels this version references are found, empty,
        missing, failed or not synced, and the percentage found."""
        rows = []
        for language in languages or self.languages() or [self.language]:
            statuses = [r[2] for r in self._label_rows(language)]
            n = {s: statuses.count(s) for s in LABEL_STATUSES}
            share = round(100 * n["found"] / len(statuses), 1) if statuses else None
            rows.append((language, *(n[s] for s in LABEL_STATUSES), len(statuses), share))
        return Table.from_rows(
            "coverage", COVERAGE_COLUMNS, rows, f"label coverage of {self.version} per language"
        )


# -- helpers -------------------------------------------------------------------------------------
def matcher(pattern: str | None) -> Callable[..., bool]:
    """A case-insensitive test of names: substring, or glob when ``pattern`` has ``*?[``."""
    if pattern is None or not pattern.strip():
        return lambda *names: True
    text = pattern.strip().lower()
    if any(c in text for c in "*?["):
        return lambda *names: any(n and fnmatch.fnmatchcase(n.lower(), text) for n in names)
    return lambda *names: any(n and text in n.lower() for n in names)


def pick(text: str, names: Sequence[tuple[str, str]], what: str) -> str | None:
    """What ``text`` names among ``(name, target)`` pairs: an exact name first, else a
    case-insensitive one when it is unique (two names that differ only by case are asked for
    exactly); ``None`` when nothing matches."""
    exact = {target for name, target in names if name == text}
    if not exact:
        key = text.lower()
        exact = {target for name, target in names if name.lower() == key}
    if len(exact) > 1:
        raise NotInCacheError(
            f"{text!r} names several {what} that differ only by case: "
            f"{', '.join(sorted(exact))}; give the exact name"
        )
    return next(iter(exact), None)


def close_matches(text: str, names: Sequence[str], n: int = 5) -> str:
    """``"; close matches: A, B"`` (by spelling, then by substring), or a hint when none."""
    lowered: dict[str, str] = {}
    for name in names:
        lowered.setdefault(name.lower(), name)
    key = text.lower()
    found = [lowered[m] for m in difflib.get_close_matches(key, list(lowered), n=n, cutoff=0.6)]
    if len(found) < n:
        found += [v for k, v in lowered.items() if key in k and v not in found][: n - len(found)]
    if not found:
        return "; no close match (search for a part of the name)"
    return f"; close matches: {', '.join(found)}"


def enum_of(data_type: str | None, type_name: str | None) -> str | None:
    """The enumeration of an Enum property (its type name without the namespace). A primitive
    type (``Edm.Boolean`` with ``DataType`` ``Enum``, as the service sends for NoYes-like
    fields) is not an enumeration."""
    if data_type != "Enum" or not type_name or type_name.startswith("Edm."):
        return None
    return type_name.rsplit(".", 1)[-1]


def constraints_text(raw: str | None) -> str | None:
    """Stored constraints as one line: ``A = B`` (referential), ``A = 'v'`` (fixed)."""
    if not raw:
        return None
    parts = []
    for c in json.loads(raw):
        value = c.get("ValueStr") or c.get("Value")
        if c.get("kind") == "Referential":
            parts.append(f"{c.get('Property')} = {c.get('ReferencedProperty')}")
        elif c.get("kind") == "Fixed":
            parts.append(f"{c.get('Property')} = {value!r}")
        else:
            parts.append(f"related.{c.get('RelatedProperty')} = {value!r}")
    return "; ".join(parts) or None


def parameters_text(raw: str | None) -> str | None:
    """Stored action parameters as ``name: Type, ...``."""
    if not raw:
        return None
    params = json.loads(raw)
    return ", ".join(f"{p.get('Name')}: {(p.get('Type') or {}).get('TypeName')}" for p in params)
