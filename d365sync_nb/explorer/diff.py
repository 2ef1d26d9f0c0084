"""What changed between two builds of metadata (two versions, or two environments).

One row per change: ``kind`` (entity, data_entity, field, navigation, action, enumeration,
member, label), ``parent`` (the entity or enumeration it belongs to), ``name``, ``change``
(added, removed, changed) and, for a change, the ``attribute`` with its ``before`` and
``after``. A label's text that differs between the builds (both reference the label and were
synced in the language) is kind ``label``, ``changed``, its ``attribute`` the language. Fields,
relations and actions are compared only on entities present in both (an added entity is one
row), members only on enumerations present in both. Positions (ordinals) are not compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from d365sync_nb.errors import CacheError
from d365sync_nb.explorer.table import Table, columns

Query = Callable[[str, Sequence[Any]], list[Any]]

DIFF_COLUMNS = columns("kind parent name change attribute before after")
CHANGES = ("added", "removed", "changed")


@dataclass(frozen=True)
class Kind:
    """How one kind of metadata is compared: its table, key columns and attributes."""

    kind: str
    plural: str
    table: str
    parent: str | None  # the parent's key column (entity_name, enum_name)
    parent_kind: str | None  # compared only where this parent kind exists in both
    attributes: tuple[str, ...]  # column names; ``x_json`` is reported as ``x``
    booleans: frozenset[str] = frozenset()


KINDS: tuple[Kind, ...] = (
    Kind("entity", "entities", "public_entities", None, None,
         ("entity_set_name", "label_id", "is_read_only", "configuration_enabled"),
         frozenset({"is_read_only", "configuration_enabled"})),
    Kind("data_entity", "data entities", "data_entities", None, None,
         ("public_entity_name", "public_collection_name", "label_id", "data_service_enabled",
          "data_management_enabled", "entity_category", "is_read_only"),
         frozenset({"data_service_enabled", "data_management_enabled", "is_read_only"})),
    Kind("field", "fields", "entity_properties", "entity_name", "entity",
         ("type_name", "data_type", "label_id", "is_key", "is_mandatory",
          "configuration_enabled", "allow_edit", "allow_edit_on_create", "is_dimension",
          "dimension_relation", "is_dynamic_dimension", "dimension_legal_entity_property",
          "dimension_type_property"),
         frozenset({"is_key", "is_mandatory", "configuration_enabled", "allow_edit",
                    "allow_edit_on_create", "is_dimension", "is_dynamic_dimension"})),
    Kind("navigation", "relations", "navigation_properties", "entity_name", "entity",
         ("related_entity", "related_relation_name", "cardinality", "constraints_json")),
    Kind("action", "actions", "entity_actions", "entity_name", "entity",
         ("binding_kind", "field_lookup", "parameters_json", "return_type_name",
          "return_is_collection"),
         frozenset({"return_is_collection"})),
    Kind("enumeration", "enumerations", "enumerations", None, None, ("label_id",)),
    Kind("member", "members", "enumeration_members", "enum_name", "enumeration",
         ("value", "label_id", "configuration_enabled"), frozenset({"configuration_enabled"})),
)  # fmt: skip
KIND_NAMES = (*(k.kind for k in KINDS), "label")

Key = tuple[str, str]  # (parent or "", name)
Snapshot = dict[Key, list[tuple[Any, ...]]]  # key -> its rows' attribute values
Side = tuple[str, int]  # (schema: "main" or an attached database, build id)


def _differing(query: Query, kind: Kind, mine: Side, theirs: Side) -> Snapshot:
    """``mine``'s rows of a kind that ``theirs`` lacks as they are (added, removed or changed),
    keyed by (parent, name). SQLite's EXCEPT does the work: only the differences reach Python."""
    parent = kind.parent or "''"
    cols = f"{parent}, name, {', '.join(kind.attributes)}"
    rows = query(
        f"SELECT {cols} FROM {mine[0]}.{kind.table} WHERE build_id = ?"
        f" EXCEPT SELECT {cols} FROM {theirs[0]}.{kind.table} WHERE build_id = ?",
        (mine[1], theirs[1]),
    )
    out: Snapshot = {}
    for r in rows:
        out.setdefault((r[0], r[1]), []).append(tuple(r[2:]))
    return out


def _repeated(query: Query, kind: Kind, side: Side) -> set[Key]:
    """Keys that name more than one row in a build (the service allows it, e.g. overloads)."""
    parent = kind.parent or "''"
    rows = query(
        f"SELECT {parent}, name FROM {side[0]}.{kind.table} WHERE build_id = ?"
        " GROUP BY 1, 2 HAVING count(*) > 1",
        (side[1],),
    )
    return {(r[0], r[1]) for r in rows}


def check_comparable(query: Query, schema: str, path: Any) -> None:
    """Raise a CacheError naming ``path`` when its tables lack a column the diff compares."""
    for kind in KINDS:
        found = {r[1] for r in query(f"PRAGMA {schema}.table_info({kind.table})", ())}
        wanted = {"build_id", "name", kind.parent or "name", *kind.attributes}
        missing = sorted(wanted - found)
        if missing:
            raise CacheError(
                f"The cache {path} cannot be compared: its {kind.table} table has no "
                f"{', '.join(missing)} (written by another version of d365sync_nb?)"
            )


def _names(query: Query, kind: Kind, side: Side) -> set[str]:
    rows = query(f"SELECT name FROM {side[0]}.{kind.table} WHERE build_id = ?", (side[1],))
    return {r[0] for r in rows}


def diff_builds(query: Query, before: Side, after: Side) -> list[dict[str, Any]]:
    """Every change from build ``before`` to build ``after`` (each ``(schema, build_id)``, both
    reachable by ``query``), sorted by kind, parent, name, change, attribute."""
    out: list[dict[str, Any]] = []
    parents: dict[str, set[str]] = {}  # entity/enumeration names present in both builds
    for kind in KINDS:
        if kind.parent is None:
            parents[kind.kind] = _names(query, kind, before) & _names(query, kind, after)
        old = _differing(query, kind, before, after)
        new = _differing(query, kind, after, before)
        repeated = _repeated(query, kind, before) | _repeated(query, kind, after)
        out.extend(_compare(kind, old, new, parents.get(kind.parent_kind or ""), repeated))
    out.extend(label_changes(query, before, after))
    order = {k: i for i, k in enumerate(KIND_NAMES)}
    change_order = {c: i for i, c in enumerate(CHANGES)}
    out.sort(
        key=lambda r: (
            order[r["kind"]],
            r["parent"] or "",
            r["name"],
            change_order[r["change"]],
            r["attribute"] or "",
        )
    )
    return out


def _has_label_texts(query: Query, schema: str) -> bool:
    rows = query(f"SELECT 1 FROM {schema}.sqlite_master WHERE name = 'build_labels'", ())
    return bool(rows)


def label_changes(query: Query, before: Side, after: Side) -> list[dict[str, Any]]:
    """Label texts that differ between two builds, per language, for the labels both
    reference and both were synced with (``build_labels``): kind ``label``, ``changed``."""
    if not (_has_label_texts(query, before[0]) and _has_label_texts(query, after[0])):
        return []  # a cache written before label texts were kept per version
    (a, a_build), (b, b_build) = before, after
    rows = query(
        "SELECT x.label_id, x.language, tx.value, tx.status, ty.value, ty.status"
        f" FROM {a}.build_labels x JOIN {b}.build_labels y"
        " ON y.build_id = ?2 AND y.label_id = x.label_id AND y.language = x.language"
        f" JOIN {a}.label_texts tx ON tx.label_id = x.label_id AND tx.language = x.language"
        " AND tx.rev = x.rev"
        f" JOIN {b}.label_texts ty ON ty.label_id = y.label_id AND ty.language = y.language"
        " AND ty.rev = y.rev"
        " WHERE x.build_id = ?1 AND (tx.value != ty.value OR tx.status != ty.status)",
        (a_build, b_build),
    )
    out = []
    for label_id, language, old, old_status, new, new_status in rows:
        old_text = old if old_status in ("found", "empty") else None
        new_text = new if new_status in ("found", "empty") else None
        if old_text != new_text:
            out.append({"kind": "label", "parent": None, "name": label_id, "change": "changed",
                        "attribute": language, "before": old_text, "after": new_text})  # fmt: skip
    return out


def _compare(
    kind: Kind, old: Snapshot, new: Snapshot, parents: set[str] | None, repeated: set[Key]
) -> list[dict[str, Any]]:
    """Rows of ``old`` and ``new`` that differ: keys in both are changed, the rest removed or
    added (only under ``parents`` present in both, for kinds that have a parent). A key with
    several rows in either build cannot say which row became which: each differing row is
    removed or added, with all its attributes in ``before`` or ``after``."""
    rows: list[dict[str, Any]] = []

    def row(key: tuple[str, str], change: str, attr: str | None = None, a: Any = None,
            b: Any = None) -> dict[str, Any]:  # fmt: skip
        return {
            "kind": kind.kind,
            "parent": key[0] or None,
            "name": key[1],
            "change": change,
            "attribute": attr,
            "before": a,
            "after": b,
        }

    def relevant(key: Key) -> bool:
        return parents is None or key[0] in parents

    def whole(values: tuple[Any, ...]) -> dict[str, Any]:
        return {
            attr.removesuffix("_json"): _value(kind, attr, v)
            for attr, v in zip(kind.attributes, values, strict=True)
        }

    for key in (old.keys() | new.keys()) & repeated:
        if relevant(key):
            rows += [row(key, "removed", a=whole(v)) for v in old.get(key, [])]
            rows += [row(key, "added", b=whole(v)) for v in new.get(key, [])]
    for key in old.keys() - new.keys() - repeated:
        if relevant(key):
            rows.append(row(key, "removed"))
    for key in new.keys() - old.keys() - repeated:
        if relevant(key):
            rows.append(row(key, "added"))
    for key in (old.keys() & new.keys()) - repeated:
        (a,), (b,) = old[key], new[key]
        for attr, x, y in zip(kind.attributes, a, b, strict=True):
            if x != y:
                name = attr.removesuffix("_json")
                rows.append(row(key, "changed", name, _value(kind, attr, x), _value(kind, attr, y)))
    return rows


def _value(kind: Kind, attr: str, value: Any) -> Any:
    """A stored value as the service gave it (booleans, parsed JSON)."""
    if value is None:
        return None
    if attr in kind.booleans:
        return bool(value)
    if attr.endswith("_json"):
        return json.loads(value)
    return value


def summarize(changes: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per kind: items added, removed and changed (an item with several attributes counts once)."""
    counts: dict[str, dict[str, int]] = {}
    changed: dict[str, set[tuple[Any, Any]]] = {}
    for c in changes:
        per = counts.setdefault(c["kind"], dict.fromkeys(CHANGES, 0))
        if c["change"] == "changed":
            seen = changed.setdefault(c["kind"], set())
            # a label counts once per language (a label text); an item once for its attributes
            item = (c["name"], c["attribute"]) if c["kind"] == "label" else (c["parent"], c["name"])
            if item in seen:
                continue
            seen.add(item)
        per[c["change"]] += 1
    return {k: counts[k] for k in KIND_NAMES if k in counts}


def summary_text(summary: dict[str, dict[str, int]]) -> str:
    """``+5 entities, -5, 5 changed; +5 fields, -5; -5 enumerations; 12 label texts changed``
    (or ``no changes``)."""
    plural = {k.kind: k.plural for k in KINDS}
    parts = []
    for kind, n in summary.items():
        if kind == "label":
            if n["changed"]:
                parts.append(f"{n['changed']:,} label text{'s' if n['changed'] != 1 else ''} "
                             "changed")  # fmt: skip
            continue
        bits = []
        for change, sign in (("added", "+"), ("removed", "-")):
            if n[change]:
                bits.append(f"{sign}{n[change]:,}")
        if n["changed"]:
            bits.append(f"{n['changed']:,} changed")
        if bits:
            bits[0] = f"{bits[0]} {plural[kind]}" if bits[0][0] in "+-" else (
                f"{plural[kind]}: {bits[0]}")  # fmt: skip
            parts.append(", ".join(bits))
    return "; ".join(parts) or "no changes"


def changes_table(changes: Sequence[dict[str, Any]], title: str) -> Table:
    """The changes as a table; ``before``/``after`` as text (JSON for lists and booleans)."""
    names = [c.name for c in DIFF_COLUMNS]
    rows = [
        tuple(_cell(c[n]) if n in ("before", "after") else c[n] for n in names) for c in changes
    ]
    return Table("diff", DIFF_COLUMNS, rows, title)


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)
