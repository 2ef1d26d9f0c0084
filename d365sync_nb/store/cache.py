"""The local metadata cache: one SQLite (WAL) file per environment.

All writes go through one connection on one worker thread (``await store.run(fn, ...)``) and
are batched with ``executemany`` in a transaction. Reads use a connection per thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from d365sync_nb.errors import D365SyncError
from d365sync_nb.metadata import (
    DataEntity,
    EnvironmentVersion,
    Label,
    PublicEntity,
    PublicEnumeration,
    constraint_kind,
)
from d365sync_nb.store.schema import BUILD_TABLES, SCHEMA, SCHEMA_VERSION

T = TypeVar("T")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _b(value: bool | None) -> int | None:
    return None if value is None else int(value)


class MetadataStore:
    """Cache of one environment: versions, builds of metadata, labels, search, sessions."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="d365sync-store")
        self._writer = self._connect()
        with self._lock, self._writer:
            self._writer.executescript(SCHEMA)
            self._writer.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def __repr__(self) -> str:
        return f"MetadataStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    @property
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._writer:
            yield self._writer

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._reader.execute(sql, tuple(params)).fetchall()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store method on the store's writer thread, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- versions -----------------------------------------------------------------------
    def upsert_version(self, env: EnvironmentVersion) -> int:
        """The id of the global version with these modules (created when first seen)."""
        modules = json.dumps([m.model_dump() for m in env.modules])
        now = _now()
        with self._write() as db:
            db.execute(
                "INSERT INTO versions(modules_hash, modules_json, module_count,"
                " application_version, platform_version, first_seen, last_detected)"
                " VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT(modules_hash) DO UPDATE SET last_detected = excluded.last_detected,"
                " application_version = excluded.application_version,"
                " platform_version = excluded.platform_version",
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
            row = db.execute(
                "SELECT id FROM versions WHERE modules_hash = ?", (env.modules_hash,)
            ).fetchone()
        return int(row["id"])

    def get_version(self, version_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM versions WHERE id = ?", (version_id,))
        return _version_dict(rows[0]) if rows else None

    def list_versions(self) -> list[dict[str, Any]]:
        return [_version_dict(r) for r in self._rows("SELECT * FROM versions ORDER BY id")]

    # -- builds -------------------------------------------------------------------------
    def begin_build(self, version_id: int, session_id: str, strategy: str) -> int:
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO builds(version_id, session_id, strategy, status, started_at)"
                " VALUES (?,?,?,'building',?)",
                (version_id, session_id, strategy, _now()),
            )
        return int(cur.lastrowid or 0)

    def copy_build(self, from_build: int, to_build: int, tables: Iterable[str]) -> None:
        """Copy rows of ``tables`` from one build to another (skipped phases keep their data)."""
        with self._write() as db:
            for table in tables:
                cols = self._columns(table)
                rest = ", ".join(c for c in cols if c != "build_id")
                db.execute(
                    f"INSERT INTO {table}(build_id, {rest}) SELECT ?, {rest} FROM {table}"
                    " WHERE build_id = ?",
                    (to_build, from_build),
                )

    def copy_build_from_file(
        self, other: Path, from_build: int, to_build: int, *, language: str
    ) -> None:
        """Copy a complete build (and its labels) from another environment's cache file."""
        with self._lock:
            db = self._writer
            db.execute("ATTACH DATABASE ? AS other", (f"file:{other}?mode=ro",))
            try:
                with db:
                    for table in BUILD_TABLES:
                        rest = ", ".join(c for c in self._columns(table) if c != "build_id")
                        db.execute(
                            f"INSERT INTO main.{table}(build_id, {rest}) SELECT ?, {rest}"
                            f" FROM other.{table} WHERE build_id = ?",
                            (to_build, from_build),
                        )
                    db.execute(
                        "INSERT OR REPLACE INTO main.staged_labels SELECT ?, * FROM other.labels"
                        " WHERE language = ?",
                        (to_build, language),
                    )
            finally:
                db.execute("DETACH DATABASE other")

    def _columns(self, table: str) -> list[str]:
        return [r[1] for r in self._writer.execute(f"PRAGMA table_info({table})").fetchall()]

    def write_data_entities(self, build_id: int, entities: list[DataEntity]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO data_entities VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        build_id,
                        e.name,
                        e.public_entity_name,
                        e.public_collection_name,
                        e.label_id,
                        _b(e.data_service_enabled),
                        _b(e.data_management_enabled),
                        e.entity_category,
                        _b(e.is_read_only),
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
                    _b(e.is_read_only),
                    _b(e.configuration_enabled),
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
                        _b(p.is_key),
                        _b(p.is_mandatory),
                        _b(p.configuration_enabled),
                        _b(p.allow_edit),
                        _b(p.allow_edit_on_create),
                        _b(p.is_dimension),
                        p.dimension_relation,
                        _b(p.is_dynamic_dimension),
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
                        _b(ret.is_collection) if ret else None,
                    )
                )
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO public_entities VALUES (?,?,?,?,?,?)", entity_rows
            )
            db.executemany(
                "INSERT OR REPLACE INTO entity_properties VALUES"
                " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                props,
            )
            db.executemany(
                "INSERT OR REPLACE INTO navigation_properties VALUES (?,?,?,?,?,?,?,?)", navs
            )
            db.executemany("INSERT OR REPLACE INTO property_groups VALUES (?,?,?,?,?)", groups)
            db.executemany(
                "INSERT OR REPLACE INTO entity_actions VALUES (?,?,?,?,?,?,?,?,?)", actions
            )

    def write_enumerations(self, build_id: int, enums: list[PublicEnumeration]) -> None:
        members = [
            (build_id, e.name, i, m.name, m.value, m.label_id, _b(m.configuration_enabled))
            for e in enums
            for i, m in enumerate(e.members)
        ]
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO enumerations VALUES (?,?,?)",
                [(build_id, e.name, e.label_id) for e in enums],
            )
            db.executemany(
                "INSERT OR REPLACE INTO enumeration_members VALUES (?,?,?,?,?,?,?)", members
            )

    def write_labels(self, build_id: int, labels: list[Label]) -> None:
        """Stage fetched labels for a build (visible once the build is finalized)."""
        now = _now()
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO staged_labels VALUES (?,?,?,?,?,?)",
                [(build_id, lb.id, lb.language, lb.value, lb.status, now) for lb in labels],
            )

    def build_label_ids(self, build_id: int) -> set[str]:
        """Every distinct label id referenced by a build's metadata."""
        sql = " UNION ".join(
            f"SELECT label_id FROM {t} WHERE build_id = ?1 AND label_id IS NOT NULL"
            f" AND label_id != ''"
            for t in (
                "data_entities",
                "public_entities",
                "entity_properties",
                "enumerations",
                "enumeration_members",
            )
        )
        with self._lock:
            rows = self._writer.execute(sql, (build_id,)).fetchall()
        return {r[0] for r in rows}

    def cached_label_ids(self, language: str) -> set[str]:
        with self._lock:
            rows = self._writer.execute(
                "SELECT label_id FROM labels WHERE language = ?", (language,)
            ).fetchall()
        return {r[0] for r in rows}

    def build_counts(self, build_id: int, language: str = "en-us") -> dict[str, int]:
        """Row counts of a build, and labels found among the ids it references."""

        def count(table: str) -> int:
            row = self._writer.execute(
                f"SELECT count(*) FROM {table} WHERE build_id = ?", (build_id,)
            ).fetchone()
            return int(row[0])

        with self._lock:
            counts = {
                "data_entities": count("data_entities"),
                "public_entities": count("public_entities"),
                "properties": count("entity_properties"),
                "navigation_properties": count("navigation_properties"),
                "actions": count("entity_actions"),
                "enumerations": count("enumerations"),
                "enumeration_members": count("enumeration_members"),
            }
            ids = self.build_label_ids(build_id)
            self._writer.execute("CREATE TEMP TABLE IF NOT EXISTS ids(label_id TEXT PRIMARY KEY)")
            self._writer.execute("DELETE FROM temp.ids")
            self._writer.executemany("INSERT INTO temp.ids VALUES (?)", ((i,) for i in ids))
            rows = self._writer.execute(
                "SELECT coalesce(s.status, l.status), count(*) FROM temp.ids i"
                " LEFT JOIN staged_labels s"
                "  ON s.label_id = i.label_id AND s.build_id = ?1 AND s.language = ?2"
                " LEFT JOIN labels l ON l.label_id = i.label_id AND l.language = ?2"
                " GROUP BY 1",
                (build_id, language),
            ).fetchall()
            self._writer.execute("DELETE FROM temp.ids")
            self._writer.commit()
        by_status = {r[0]: int(r[1]) for r in rows}
        counts["label_ids"] = len(ids)
        counts["labels"] = by_status.get("found", 0)
        counts["labels_empty"] = by_status.get("empty", 0)
        counts["labels_missing"] = by_status.get("missing", 0)
        return counts

    def build_search_index(self, build_id: int, language: str = "en-us") -> int:
        """(Re)build the FTS5 rows of a build: entities, properties, enumerations, members."""
        label = (
            "coalesce((SELECT value FROM staged_labels s WHERE s.build_id = ?2"
            " AND s.label_id = t.label_id AND s.language = ?1),"
            " (SELECT value FROM labels l WHERE l.label_id = t.label_id AND l.language = ?1))"
        )
        sources = [
            ("data_entity", "t.name", "t.public_entity_name", "data_entities"),
            ("public_entity", "t.name", "t.entity_set_name", "public_entities"),
            ("property", "t.name", "t.entity_name", "entity_properties"),
            ("enumeration", "t.name", "NULL", "enumerations"),
            ("enum_member", "t.name", "t.enum_name", "enumeration_members"),
        ]
        with self._write() as db:
            db.execute("DELETE FROM search_index WHERE build_id = ?", (build_id,))
            for kind, name, parent, table in sources:
                db.execute(
                    f"INSERT INTO search_index(kind, name, label, parent, build_id)"
                    f" SELECT '{kind}', {name}, {label}, {parent}, ?2 FROM {table} t"
                    f" WHERE t.build_id = ?2",
                    (language, build_id),
                )
            row = db.execute(
                "SELECT count(*) FROM search_index WHERE build_id = ?", (build_id,)
            ).fetchone()
        return int(row[0])

    def finalize_build(
        self,
        version_id: int,
        build_id: int,
        *,
        has_metadata: bool,
        has_labels: bool,
        counts: dict[str, int],
    ) -> None:
        """Make a build the version's visible one and drop the build it replaces, atomically."""
        with self._write() as db:
            build = db.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()
            if build is None or build["status"] != "building":
                raise D365SyncError(
                    f"build {build_id} of this session was removed from the cache meanwhile; "
                    "nothing was changed, run the sync again"
                )
            row = db.execute(
                "SELECT current_build_id FROM versions WHERE id = ?", (version_id,)
            ).fetchone()
            old = row["current_build_id"] if row else None
            db.execute(
                "UPDATE versions SET current_build_id = ?, synced_at = ?, has_metadata = ?,"
                " has_labels = ?, counts_json = ? WHERE id = ?",
                (
                    build_id,
                    _now(),
                    int(has_metadata),
                    int(has_labels),
                    json.dumps(counts),
                    version_id,
                ),
            )
            db.execute("UPDATE builds SET status = 'complete' WHERE id = ?", (build_id,))
            db.execute(
                "INSERT OR REPLACE INTO labels SELECT label_id, language, value, status,"
                " fetched_at FROM staged_labels WHERE build_id = ?",
                (build_id,),
            )
            db.execute("DELETE FROM staged_labels WHERE build_id = ?", (build_id,))
            if old is not None and old != build_id:
                self._delete_build_rows(db, old)

    def discard_build(self, build_id: int) -> None:
        """Delete a build that will never become visible (failed, cancelled, interrupted).

        A build that was finalized meanwhile is left alone: it is the visible one now.
        """
        with self._write() as db:
            row = db.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()
            if row is not None and row["status"] == "building":
                self._delete_build_rows(db, build_id)

    @staticmethod
    def _delete_build_rows(db: sqlite3.Connection, build_id: int) -> None:
        for table in BUILD_TABLES:
            db.execute(f"DELETE FROM {table} WHERE build_id = ?", (build_id,))
        db.execute("DELETE FROM search_index WHERE build_id = ?", (build_id,))
        db.execute("DELETE FROM staged_labels WHERE build_id = ?", (build_id,))
        db.execute("DELETE FROM builds WHERE id = ?", (build_id,))

    def discard_orphan_builds(self) -> int:
        """Builds left by a killed process: never visible, safe to delete."""
        with self._lock:
            rows = self._writer.execute(
                "SELECT id, session_id FROM builds WHERE status != 'complete' AND id NOT IN"
                " (SELECT current_build_id FROM versions WHERE current_build_id IS NOT NULL)"
                " AND session_id NOT IN"
                " (SELECT session_id FROM sessions WHERE status IN ('running', 'pending'))"
            ).fetchall()
        orphans = [int(r["id"]) for r in rows if r["session_id"] not in LIVE_SESSIONS]
        for build_id in orphans:
            self.discard_build(build_id)
        return len(orphans)

    # -- queries ------------------------------------------------------------------------
    def search(self, text: str, limit: int = 20, version_id: int | None = None) -> list[dict]:
        """Full-text search of the visible build (latest version when none is given)."""
        terms = [t for t in "".join(c if c.isalnum() else " " for c in text).split() if t]
        if not terms:
            return []
        query = " ".join(f'"{t}"*' for t in terms)
        version = self.get_version(version_id) if version_id else self.latest_synced_version()
        if not version or version["current_build_id"] is None:
            return []
        rows = self._rows(
            # names weigh most, then labels; entities before their fields on equal scores
            "SELECT kind, name, label, parent, bm25(search_index, 0, 10, 4, 1) AS score"
            " FROM search_index WHERE search_index MATCH ? AND build_id = ?"
            " ORDER BY score, CASE kind WHEN 'public_entity' THEN 0 WHEN 'data_entity' THEN 1"
            " WHEN 'enumeration' THEN 2 WHEN 'property' THEN 3 ELSE 4 END, name LIMIT ?",
            (query, version["current_build_id"], limit),
        )
        return [dict(r) for r in rows]

    def latest_synced_version(self) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM versions WHERE current_build_id IS NOT NULL"
            " ORDER BY synced_at DESC LIMIT 1"
        )
        return _version_dict(rows[0]) if rows else None

    def label_stats(self, language: str = "en-us") -> dict[str, int]:
        rows = self._rows(
            "SELECT status, count(*) FROM labels WHERE language = ? GROUP BY status", (language,)
        )
        return {r[0]: int(r[1]) for r in rows}

    # -- sessions -----------------------------------------------------------------------
    def save_session(self, session: Any) -> None:
        """Upsert a SyncSession and its phases (the persistent history)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    session.session_id,
                    session.environment,
                    session.strategy.value,
                    session.status.value,
                    session.global_version_id,
                    session.initiated_by,
                    session.started_at.isoformat(),
                    session.completed_at.isoformat() if session.completed_at else None,
                    session.error,
                    session.message,
                    json.dumps(session.counts),
                    session.requests,
                    os.getpid(),
                    HOST,
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO session_phases VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        session.session_id,
                        p.phase.value,
                        i,
                        p.status.value,
                        p.items_processed,
                        p.items_total,
                        p.current_item,
                        p.started_at.isoformat() if p.started_at else None,
                        p.completed_at.isoformat() if p.completed_at else None,
                        p.error,
                        p.weight,
                    )
                    for i, p in enumerate(session.phases.values())
                ],
            )

    def load_sessions(
        self, *, limit: int = 20, session_id: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Sessions newest first, each a dict with its ``phases`` list (rows as stored)."""
        where, params = [], []
        if session_id:
            where.append("session_id = ?")
            params.append(session_id)
        if status:
            where.append("status = ?")
            params.append(status)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sessions = [
            dict(r)
            for r in self._rows(
                f"SELECT * FROM sessions {clause} ORDER BY started_at DESC LIMIT ?",
                [*params, limit],
            )
        ]
        for s in sessions:
            s["counts"] = json.loads(s.pop("counts_json") or "{}")
            s["phases"] = [
                dict(r)
                for r in self._rows(
                    "SELECT * FROM session_phases WHERE session_id = ? ORDER BY ordinal",
                    (s["session_id"],),
                )
            ]
        return sessions

    def count_sessions(self) -> int:
        return int(self._rows("SELECT count(*) FROM sessions")[0][0])

    def running_elsewhere(self) -> list[dict[str, Any]]:
        """Sessions recorded as running by another live process on this host."""
        rows = self._rows(
            "SELECT session_id, global_version_id, pid, host FROM sessions"
            " WHERE status IN ('running', 'pending')"
        )
        return [dict(r) for r in rows if _alive_elsewhere(r["pid"], r["host"])]

    def mark_interrupted(self, message: str) -> list[str]:
        """Sessions whose process has died become failed; returns their ids.

        A session another live process on this host is running is left alone.
        """
        now = _now()
        with self._write() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT session_id, pid, host FROM sessions"
                    " WHERE status IN ('running', 'pending')"
                ).fetchall()
                if r[0] not in LIVE_SESSIONS and not _alive_elsewhere(r[1], r[2])
            ]
            db.executemany(
                "UPDATE sessions SET status = 'failed', error = ?, completed_at = ?"
                " WHERE session_id = ?",
                [(message, now, i) for i in ids],
            )
            db.executemany(
                "UPDATE session_phases SET status = 'failed', error = ?, completed_at = ?"
                " WHERE session_id = ? AND status = 'running'",
                [(message, now, i) for i in ids],
            )
        return ids

    def phase_seconds(self, strategy: str, limit: int = 5) -> dict[str, float]:
        """Average seconds per phase over the last completed sessions of a strategy."""
        rows = self._rows(
            "SELECT p.phase, avg((julianday(p.completed_at) - julianday(p.started_at)) * 86400)"
            " FROM session_phases p WHERE p.status = 'completed' AND p.session_id IN"
            " (SELECT session_id FROM sessions WHERE status = 'completed' AND strategy = ?"
            "  ORDER BY started_at DESC LIMIT ?) GROUP BY p.phase",
            (strategy, limit),
        )
        return {r[0]: float(r[1]) for r in rows if r[1] is not None}


HOST = socket.gethostname()
# Sessions running in this process (any manager): never "interrupted", their builds never orphans.
LIVE_SESSIONS: set[str] = set()


def _alive_elsewhere(pid: int | None, host: str | None) -> bool:
    """True when ``pid`` is another process, alive on this host."""
    if not pid or host != HOST or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _version_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["modules"] = json.loads(data.pop("modules_json"))
    data["counts"] = json.loads(data.pop("counts_json") or "{}")
    data["has_metadata"] = bool(data["has_metadata"])
    data["has_labels"] = bool(data["has_labels"])
    return data


def store_path(cache_dir: Path, environment_name: str) -> Path:
    return cache_dir / f"{environment_name}.sqlite3"


def find_shared_build(cache_dir: Path, modules_hash: str, exclude: Path) -> dict[str, Any] | None:
    """A complete build with these modules in another environment's cache file, newest first."""
    best: dict[str, Any] | None = None
    for path in sorted(cache_dir.glob("*.sqlite3")):
        if path.resolve() == exclude.resolve():
            continue
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                row = conn.execute(
                    "SELECT current_build_id, synced_at, has_labels FROM versions"
                    " WHERE modules_hash = ? AND current_build_id IS NOT NULL"
                    " AND has_metadata = 1",
                    (modules_hash,),
                ).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            continue  # not a cache of ours, or locked: not a source
        if row and (best is None or str(row[1]) > str(best["synced_at"])):
            best = {
                "path": path,
                "build_id": int(row[0]),
                "synced_at": row[1],
                "has_labels": bool(row[2]),
                "environment": path.stem,
            }
    return best
