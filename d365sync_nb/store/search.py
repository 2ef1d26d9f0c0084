"""The FTS5 search index of the metadata: built per build, searched in the visible one."""

from __future__ import annotations

from typing import Any

from d365sync_nb.store.database import Database
from d365sync_nb.store.versions import Versions

# kind, name column, parent column, table: what a build puts in the index.
SOURCES = (
    ("data_entity", "t.name", "t.public_entity_name", "data_entities"),
    ("public_entity", "t.name", "t.entity_set_name", "public_entities"),
    ("property", "t.name", "t.entity_name", "entity_properties"),
    ("enumeration", "t.name", "NULL", "enumerations"),
    ("enum_member", "t.name", "t.enum_name", "enumeration_members"),
)


class SearchIndex:
    """Full-text search over entities, properties, enumerations and members, with labels."""

    def __init__(self, db: Database, versions: Versions) -> None:
        self.db = db
        self.versions = versions

    def build(self, build_id: int, language: str = "en-us") -> int:
        """(Re)build the rows of a build: entities, properties, enumerations, members. Returns
        the number of rows indexed."""
        label = (
            "coalesce((SELECT value FROM staged_labels s WHERE s.build_id = ?2"
            " AND s.label_id = t.label_id AND s.language = ?1),"
            " (SELECT value FROM labels l WHERE l.label_id = t.label_id AND l.language = ?1))"
        )
        with self.db.write() as conn:
            conn.execute("DELETE FROM search_index WHERE build_id = ?", (build_id,))
            for kind, name, parent, table in SOURCES:
                conn.execute(
                    f"INSERT INTO search_index(kind, name, label, parent, build_id)"
                    f" SELECT '{kind}', {name}, {label}, {parent}, ?2 FROM {table} t"
                    f" WHERE t.build_id = ?2",
                    (language, build_id),
                )
            row = conn.execute(
                "SELECT count(*) FROM search_index WHERE build_id = ?", (build_id,)
            ).fetchone()
        return int(row[0])

    def search(
        self, text: str, limit: int = 20, version_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Full-text search of the visible build (latest version when none is given)."""
        terms = [t for t in "".join(c if c.isalnum() else " " for c in text).split() if t]
        if not terms:
            return []
        query = " ".join(f'"{t}"*' for t in terms)
        versions = self.versions
        version = (
            versions.get_version(version_id) if version_id else versions.latest_synced_version()
        )
        if not version or version["current_build_id"] is None:
            return []
        rows = self.db.rows(
            # names weigh most, then labels; entities before their fields on equal scores
            "SELECT kind, name, label, parent, bm25(search_index, 0, 10, 4, 1) AS score"
            " FROM search_index WHERE search_index MATCH ? AND build_id = ?"
            " ORDER BY score, CASE kind WHEN 'public_entity' THEN 0 WHEN 'data_entity' THEN 1"
            " WHEN 'enumeration' THEN 2 WHEN 'property' THEN 3 ELSE 4 END, name LIMIT ?",
            (query, version["current_build_id"], limit),
        )
        return [dict(r) for r in rows]
