"""The metadata rows of a build: how each model becomes rows of its tables (entities,
schemas, enumerations, staged labels), and what a build's rows count and reference."""

from __future__ import annotations

import json

from d365sync_nb.metadata import (
    DataEntity,
    Label,
    PublicEntity,
    PublicEnumeration,
    constraint_kind,
)
from d365sync_nb.store.database import Database, now_iso

# Tables whose rows reference label ids.
LABELLED_TABLES = (
    "data_entities",
    "public_entities",
    "entity_properties",
    "enumerations",
    "enumeration_members",
)


def referenced_ids_sql(build: str = "?1", *, distinct: bool = True) -> str:
    """SQL selecting the distinct label ids a build's metadata references (``build``: the
    parameter naming the build); ``distinct=False``: with repeats (``UNION ALL``, no temporary
    b-tree, for a caller that makes a set of them anyway)."""
    return (" UNION " if distinct else " UNION ALL ").join(
        f"SELECT label_id FROM {t} WHERE build_id = {build} AND label_id IS NOT NULL"
        f" AND label_id != ''"
        for t in LABELLED_TABLES
    )


def _bool_to_int(value: bool | None) -> int | None:
    """SQLite has no booleans: True/False as 1/0, unknown stays NULL."""
    return None if value is None else int(value)


class BuildRows:
    """Writes a build's metadata rows and reads what they count and reference."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write_data_entities(self, build_id: int, entities: list[DataEntity]) -> None:
        with self.db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO data_entities VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        build_id,
                        e.name,
                        e.public_entity_name,
                        e.public_collection_name,
                        e.label_id,
                        _bool_to_int(e.data_service_enabled),
                        _bool_to_int(e.data_management_enabled),
                        e.entity_category,
                        _bool_to_int(e.is_read_only),
                    )
                    for e in entities
                ],
            )

    def write_public_entities(self, build_id: int, entities: list[PublicEntity]) -> None:
        entity_rows, props, navs, groups, actions = [], [], [], [], []
        for e in entities:
            entity_rows.append(
                (
                    build_id,
                    e.name,
                    e.entity_set_name,
                    e.label_id,
                    _bool_to_int(e.is_read_only),
                    _bool_to_int(e.configuration_enabled),
                )
            )
            for i, p in enumerate(e.properties):
                props.append(
                    (
                        build_id,
                        e.name,
                        i,
                        p.name,
                        p.type_name,
                        p.data_type,
                        p.label_id,
                        _bool_to_int(p.is_key),
                        _bool_to_int(p.is_mandatory),
                        _bool_to_int(p.configuration_enabled),
                        _bool_to_int(p.allow_edit),
                        _bool_to_int(p.allow_edit_on_create),
                        _bool_to_int(p.is_dimension),
                        p.dimension_relation,
                        _bool_to_int(p.is_dynamic_dimension),
                        p.dimension_legal_entity_property,
                        p.dimension_type_property,
                    )
                )
            for i, n in enumerate(e.navigation_properties):
                constraints = [
                    {"kind": constraint_kind(c), **c.model_dump(by_alias=True)}
                    for c in n.constraints
                ]
                navs.append(
                    (
                        build_id,
                        e.name,
                        i,
                        n.name,
                        n.related_entity,
                        n.related_relation_name,
                        n.cardinality,
                        json.dumps(constraints),
                    )
                )
            for i, g in enumerate(e.property_groups):
                groups.append((build_id, e.name, i, g.name, json.dumps(g.properties)))
            for i, a in enumerate(e.actions):
                params = [p.model_dump(by_alias=True) for p in a.parameters]
                ret = a.return_type
                actions.append(
                    (
                        build_id,
                        e.name,
                        i,
                        a.name,
                        a.binding_kind,
                        a.field_lookup,
                        json.dumps(params),
                        ret.type_name if ret else None,
                        _bool_to_int(ret.is_collection) if ret else None,
                    )
                )
        with self.db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO public_entities VALUES (?,?,?,?,?,?)", entity_rows
            )
            conn.executemany(
                "INSERT OR REPLACE INTO entity_properties VALUES"
                " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                props,
            )
            conn.executemany(
                "INSERT OR REPLACE INTO navigation_properties VALUES (?,?,?,?,?,?,?,?)", navs
            )
            conn.executemany("INSERT OR REPLACE INTO property_groups VALUES (?,?,?,?,?)", groups)
            conn.executemany(
                "INSERT OR REPLACE INTO entity_actions VALUES (?,?,?,?,?,?,?,?,?)", actions
            )

    def write_enumerations(self, build_id: int, enums: list[PublicEnumeration]) -> None:
        members = [
            (
                build_id,
                e.name,
                i,
                m.name,
                m.value,
                m.label_id,
                _bool_to_int(m.configuration_enabled),
            )
            for e in enums
            for i, m in enumerate(e.members)
        ]
        with self.db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO enumerations VALUES (?,?,?)",
                [(build_id, e.name, e.label_id) for e in enums],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO enumeration_members VALUES (?,?,?,?,?,?,?)", members
            )

    def write_labels(self, build_id: int, labels: list[Label]) -> None:
        """Stage fetched labels for a build (visible once the build is finalized)."""
        now = now_iso()
        with self.db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO staged_labels VALUES (?,?,?,?,?,?)",
                [(build_id, lb.id, lb.language, lb.value, lb.status, now) for lb in labels],
            )

    # -- labels and counts -------------------------------------------------------------------
    def label_ids(self, build_id: int) -> set[str]:
        """Every distinct label id referenced by a build's metadata."""
        sql = referenced_ids_sql(distinct=False)  # the set makes them distinct (cheaper)
        with self.db.locked() as conn:
            return {r[0] for r in conn.execute(sql, (build_id,))}

    def cached_label_ids(self, language: str) -> set[str]:
        """Ids of the labels of ``language`` already in the cache (any status but ``failed``:
        a label the service refused is asked again)."""
        with self.db.locked() as conn:
            rows = conn.execute(
                "SELECT label_id FROM labels WHERE language = ? AND status != 'failed'",
                (language,),
            ).fetchall()
        return {r[0] for r in rows}

    def counts(self, build_id: int, language: str = "en-us") -> dict[str, int]:
        """Row counts of a build, and labels found among the ids it references."""
        with self.db.locked() as conn:

            def count(table: str) -> int:
                row = conn.execute(
                    f"SELECT count(*) FROM {table} WHERE build_id = ?", (build_id,)
                ).fetchone()
                return int(row[0])

            counts = {
                "data_entities": count("data_entities"),
                "public_entities": count("public_entities"),
                "properties": count("entity_properties"),
                "navigation_properties": count("navigation_properties"),
                "actions": count("entity_actions"),
                "enumerations": count("enumerations"),
                "enumeration_members": count("enumeration_members"),
            }
            ids = self.label_ids(build_id)
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS ids(label_id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM temp.ids")
            conn.executemany("INSERT INTO temp.ids VALUES (?)", ((i,) for i in ids))
            rows = conn.execute(
                "SELECT coalesce(s.status, l.status), count(*) FROM temp.ids i"
                " LEFT JOIN staged_labels s"
                "  ON s.label_id = i.label_id AND s.build_id = ?1 AND s.language = ?2"
                " LEFT JOIN labels l ON l.label_id = i.label_id AND l.language = ?2"
                " GROUP BY 1",
                (build_id, language),
            ).fetchall()
            conn.execute("DELETE FROM temp.ids")
            conn.commit()
        by_status = {r[0]: int(r[1]) for r in rows}
        counts["label_ids"] = len(ids)
        counts["labels"] = by_status.get("found", 0)
        counts["labels_empty"] = by_status.get("empty", 0)
        counts["labels_missing"] = by_status.get("missing", 0)
        if by_status.get("failed"):
            counts["labels_failed"] = by_status["failed"]
        return counts

    def build_languages(self, build_id: int) -> set[str]:
        """The languages a finalized build recorded label texts in."""
        rows = self.db.rows(
            "SELECT DISTINCT language FROM build_labels WHERE build_id = ?", (build_id,)
        )
        return {r[0] for r in rows}

    def label_stats(self, language: str = "en-us") -> dict[str, int]:
        """Cached labels of ``language`` by status (found, empty, missing)."""
        rows = self.db.rows(
            "SELECT status, count(*) FROM labels WHERE language = ? GROUP BY status", (language,)
        )
        return {r[0]: int(r[1]) for r in rows}
