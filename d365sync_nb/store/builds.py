"""Versions and builds of metadata: writes, copies between builds and caches, finalize/discard.

A version is a set of installed modules (global across environments, keyed by their hash). A
build is one sync's rows of metadata for a version; ``versions.current_build_id`` names the
visible one and switches atomically at :meth:`Builds.finalize`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from d365sync_nb.errors import D365SyncError
from d365sync_nb.metadata import (
    DataEntity,
    EnvironmentVersion,
    Label,
    PublicEntity,
    PublicEnumeration,
    constraint_kind,
)
from d365sync_nb.store.database import Database, now_iso
from d365sync_nb.store.liveness import LIVE_SESSIONS
from d365sync_nb.store.schema import BUILD_TABLES

# Tables whose rows reference label ids.
LABELLED_TABLES = (
    "data_entities",
    "public_entities",
    "entity_properties",
    "enumerations",
    "enumeration_members",
)


def _bool_to_int(value: bool | None) -> int | None:
    """SQLite has no booleans: True/False as 1/0, unknown stays NULL."""
    return None if value is None else int(value)


class Builds:
    """Versions, builds and their metadata rows in one cache file."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- versions ----------------------------------------------------------------------------
    def upsert_version(self, env: EnvironmentVersion) -> int:
        """The id of the global version with these modules (created when first seen)."""
        modules = json.dumps([m.model_dump() for m in env.modules])
        now = now_iso()
        with self.db.write() as conn:
            # update first: an upsert that conflicts would still use up an AUTOINCREMENT id,
            # and version ids are what users type (--version 2)
            seen = conn.execute(
                "UPDATE versions SET last_detected = ?, application_version = ?,"
                " platform_version = ? WHERE modules_hash = ?",
                (now, env.application_version, env.platform_version, env.modules_hash),
            ).rowcount
            if not seen:
                conn.execute(
                    "INSERT INTO versions(modules_hash, modules_json, module_count,"
                    " application_version, platform_version, first_seen, last_detected)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (
                        env.modules_hash,
                        modules,
                        len(env.modules),
                        env.application_version,
                        env.platform_version,
                        now,
                        now,
                    ),
                )
            row = conn.execute(
                "SELECT id FROM versions WHERE modules_hash = ?", (env.modules_hash,)
            ).fetchone()
        return int(row["id"])

    def get_version(self, version_id: int) -> dict[str, Any] | None:
        rows = self.db.rows("SELECT * FROM versions WHERE id = ?", (version_id,))
        return _version_dict(rows[0]) if rows else None

    def list_versions(self) -> list[dict[str, Any]]:
        return [_version_dict(r) for r in self.db.rows("SELECT * FROM versions ORDER BY id")]

    def latest_synced_version(self) -> dict[str, Any] | None:
        rows = self.db.rows(
            "SELECT * FROM versions WHERE current_build_id IS NOT NULL"
            " ORDER BY julianday(synced_at) DESC, id DESC LIMIT 1"
        )
        return _version_dict(rows[0]) if rows else None

    # -- builds ------------------------------------------------------------------------------
    def begin(self, version_id: int, session_id: str, strategy: str) -> int:
        """A new, invisible build of a version for a session; returns its id."""
        with self.db.write() as conn:
            cur = conn.execute(
                "INSERT INTO builds(version_id, session_id, strategy, status, started_at)"
                " VALUES (?,?,?,'building',?)",
                (version_id, session_id, strategy, now_iso()),
            )
        return int(cur.lastrowid or 0)

    def copy(self, from_build: int, to_build: int, tables: Iterable[str]) -> dict[str, int]:
        """Copy the rows of ``tables`` from one build to another (a phase that keeps the data
        it has). Returns the rows copied per table, in the order given: the first table's count
        is the phase's item count (entities, public entities, enumerations)."""
        copied: dict[str, int] = {}
        with self.db.write() as conn:
            for table in tables:
                rest = self._columns_but_build_id(conn, table)
                cur = conn.execute(
                    f"INSERT INTO {table}(build_id, {rest}) SELECT ?, {rest} FROM {table}"
                    " WHERE build_id = ?",
                    (to_build, from_build),
                )
                copied[table] = cur.rowcount
        return copied

    def copy_from_file(
        self, other_path: str | Path, from_build: int, to_build: int, tables: Iterable[str]
    ) -> dict[str, int]:
        """Copy the rows of ``tables`` of a build in another environment's cache file into
        ``to_build``. Returns the rows copied per table, like :meth:`copy`."""
        copied: dict[str, int] = {}
        with self._attached(other_path) as conn:
            for table in tables:
                rest = self._columns_but_build_id(conn, table)
                cur = conn.execute(
                    f"INSERT INTO main.{table}(build_id, {rest}) SELECT ?, {rest}"
                    f" FROM other.{table} WHERE build_id = ?",
                    (to_build, from_build),
                )
                copied[table] = cur.rowcount
        return copied

    def copy_labels_from_file(self, other_path: str | Path, to_build: int, language: str) -> int:
        """Stage every label of ``language`` in another cache file for ``to_build`` (merged
        into the labels at finalize, like fetched ones). Returns the number of rows staged."""
        with self._attached(other_path) as conn:
            cur = conn.execute(
                "INSERT OR REPLACE INTO main.staged_labels"
                "(build_id, label_id, language, value, status, fetched_at)"
                " SELECT ?, label_id, language, value, status, fetched_at FROM other.labels"
                " WHERE language = ?",
                (to_build, language),
            )
            return cur.rowcount

    @contextmanager
    def _attached(self, other_path: str | Path) -> Iterator[sqlite3.Connection]:
        """The writer with another cache file attached read-only as ``other``, in one
        transaction (``ATTACH`` itself must happen outside one)."""
        with self.db.locked() as conn:
            conn.execute("ATTACH DATABASE ? AS other", (_read_only_uri(other_path),))
            try:
                with conn:
                    yield conn
            finally:
                conn.execute("DETACH DATABASE other")

    @staticmethod
    def _columns_but_build_id(conn: sqlite3.Connection, table: str) -> str:
        """The table's columns other than ``build_id``, comma separated (for INSERT..SELECT)."""
        cols = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})").fetchall()]
        return ", ".join(c for c in cols if c != "build_id")

    def finalize(
        self,
        version_id: int,
        build_id: int,
        *,
        has_metadata: bool,
        has_labels: bool,
        counts: dict[str, int],
    ) -> None:
        """Make a build the version's visible one and drop the build it replaces, atomically."""
        with self.db.write() as conn:
            build = conn.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()
            if build is None or build["status"] != "building":
                raise D365SyncError(
                    f"build {build_id} of this session was removed from the cache meanwhile; "
                    "nothing was changed, run the sync again"
                )
            row = conn.execute(
                "SELECT current_build_id FROM versions WHERE id = ?", (version_id,)
            ).fetchone()
            old = row["current_build_id"] if row else None
            conn.execute(
                "UPDATE versions SET current_build_id = ?, synced_at = ?, has_metadata = ?,"
                " has_labels = ?, counts_json = ? WHERE id = ?",
                (
                    build_id,
                    now_iso(),
                    int(has_metadata),
                    int(has_labels),
                    json.dumps(counts),
                    version_id,
                ),
            )
            conn.execute("UPDATE builds SET status = 'complete' WHERE id = ?", (build_id,))
            conn.execute(
                "INSERT OR REPLACE INTO labels SELECT label_id, language, value, status,"
                " fetched_at FROM staged_labels WHERE build_id = ?1 AND status != 'failed'",
                (build_id,),
            )
            # a label the service refused this time keeps a text it gave before
            conn.execute(
                "INSERT OR IGNORE INTO labels SELECT label_id, language, value, status,"
                " fetched_at FROM staged_labels WHERE build_id = ?1 AND status = 'failed'",
                (build_id,),
            )
            conn.execute("DELETE FROM staged_labels WHERE build_id = ?", (build_id,))
            if old is not None and old != build_id:
                _delete_build_rows(conn, old)

    def discard(self, build_id: int) -> None:
        """Delete a build that will never become visible (failed, cancelled, interrupted).

        A build that was finalized meanwhile is left alone: it is the visible one now.
        """
        with self.db.write() as conn:
            row = conn.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()
            if row is not None and row["status"] == "building":
                _delete_build_rows(conn, build_id)

    def discard_orphans(self) -> int:
        """Delete builds left by a killed process (never visible); returns how many."""
        with self.db.locked() as conn:
            rows = conn.execute(
                "SELECT id, session_id FROM builds WHERE status != 'complete' AND id NOT IN"
                " (SELECT current_build_id FROM versions WHERE current_build_id IS NOT NULL)"
                " AND session_id NOT IN (SELECT session_id FROM sessions WHERE status = 'running')"
            ).fetchall()
        orphans = [int(r["id"]) for r in rows if r["session_id"] not in LIVE_SESSIONS]
        for build_id in orphans:
            self.discard(build_id)
        return len(orphans)

    # -- metadata writes ---------------------------------------------------------------------
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
        sql = " UNION ".join(
            f"SELECT label_id FROM {t} WHERE build_id = ?1 AND label_id IS NOT NULL"
            f" AND label_id != ''"
            for t in LABELLED_TABLES
        )
        with self.db.locked() as conn:
            rows = conn.execute(sql, (build_id,)).fetchall()
        return {r[0] for r in rows}

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

    def label_stats(self, language: str = "en-us") -> dict[str, int]:
        """Cached labels of ``language`` by status (found, empty, missing)."""
        rows = self.db.rows(
            "SELECT status, count(*) FROM labels WHERE language = ? GROUP BY status", (language,)
        )
        return {r[0]: int(r[1]) for r in rows}


def _delete_build_rows(conn: sqlite3.Connection, build_id: int) -> None:
    for table in BUILD_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE build_id = ?", (build_id,))
    conn.execute("DELETE FROM search_index WHERE build_id = ?", (build_id,))
    conn.execute("DELETE FROM staged_labels WHERE build_id = ?", (build_id,))
    conn.execute("DELETE FROM builds WHERE id = ?", (build_id,))


def _version_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["modules"] = json.loads(data.pop("modules_json"))
    data["counts"] = json.loads(data.pop("counts_json") or "{}")
    data["has_metadata"] = bool(data["has_metadata"])
    data["has_labels"] = bool(data["has_labels"])
    return data


def _read_only_uri(path: str | Path) -> str:
    return f"{Path(path).resolve().as_uri()}?mode=ro"


def store_path(cache_dir: Path, environment_name: str) -> Path:
    """The cache file of an environment in ``cache_dir``."""
    return cache_dir / f"{environment_name}.sqlite3"


def find_shared_build(cache_dir: Path, modules_hash: str, exclude: Path) -> dict[str, Any] | None:
    """A complete build with these modules in another environment's cache file, newest first."""
    best: dict[str, Any] | None = None
    for path in sorted(cache_dir.glob("*.sqlite3")):
        if path.resolve() == exclude.resolve():
            continue
        try:
            conn = sqlite3.connect(_read_only_uri(path), uri=True, timeout=5)
            try:
                row = conn.execute(
                    "SELECT current_build_id, synced_at, has_labels FROM versions"
                    " WHERE modules_hash = ? AND current_build_id IS NOT NULL"
                    " AND has_metadata = 1",
                    (modules_hash,),
                ).fetchone()
                if row and conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
                    continue  # damaged: never a source
            finally:
                conn.close()
        except sqlite3.Error:
            continue  # not a cache of ours, damaged or locked: not a source
        if row and (best is None or _instant(row[1]) > _instant(best["synced_at"])):
            best = {
                "path": path,
                "build_id": int(row[0]),
                "synced_at": row[1],
                "has_labels": bool(row[2]),
                "environment": path.stem,
            }
    return best


def _instant(value: str | None) -> datetime:
    """A stored timestamp (``Z`` or ``+00:00``) as a datetime, for comparing."""
    return datetime.fromisoformat(value) if value else datetime.min.replace(tzinfo=UTC)
