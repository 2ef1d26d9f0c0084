"""Builds: one sync's rows of metadata for a version, invisible until finalized.

A build is begun by a session, filled (:mod:`.rows`, or copied from another build or file), and
then either finalized (``versions.current_build_id`` switches to it and the build it replaces
is dropped, in one transaction) or discarded (failed, cancelled, interrupted).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from d365sync_nb.errors import D365SyncError
from d365sync_nb.store.database import Database, now_iso
from d365sync_nb.store.liveness import LIVE_SESSIONS
from d365sync_nb.store.rows import referenced_ids_sql
from d365sync_nb.store.schema import BUILD_TABLES


class Builds:
    """The lifecycle of builds in one cache file: begin, copy, finalize, discard."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
                rest = columns_but_build_id(conn, table)
                cur = conn.execute(
                    f"INSERT INTO {table}(build_id, {rest}) SELECT ?, {rest} FROM {table}"
                    " WHERE build_id = ?",
                    (to_build, from_build),
                )
                copied[table] = cur.rowcount
        return copied

    def finalize(
        self,
        version_id: int,
        build_id: int,
        *,
        has_metadata: bool,
        has_labels: bool,
        counts: dict[str, int],
        languages: tuple[str, ...] = (),
    ) -> None:
        """Make a build the version's visible one and drop the build it replaces, atomically.

        ``languages``: the languages its labels were synced in; the build records which text
        of each label it references it was synced with (a label's revision, shared)."""
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
            if has_labels and languages:
                _record_label_texts(conn, build_id, languages)
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


def columns_but_build_id(conn: sqlite3.Connection, table: str) -> str:
    """The table's columns other than ``build_id``, comma separated (for INSERT..SELECT)."""
    cols = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})").fetchall()]
    return ", ".join(c for c in cols if c != "build_id")


def _record_label_texts(
    conn: sqlite3.Connection, build_id: int, languages: tuple[str, ...]
) -> None:
    """Record, in ``build_labels``, the revision of each label the build references in each
    language; a text not seen before becomes the label's next revision in ``label_texts``."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS build_label_now(label_id TEXT, language TEXT,"
                 " value TEXT, status TEXT, PRIMARY KEY (label_id, language))")  # fmt: skip
    conn.execute("DELETE FROM temp.build_label_now")
    marks = ",".join(f"?{i}" for i in range(2, len(languages) + 2))
    conn.execute(
        "INSERT INTO temp.build_label_now SELECT l.label_id, l.language, coalesce(l.value, ''),"
        f" l.status FROM labels l WHERE l.language IN ({marks})"
        f" AND l.label_id IN ({referenced_ids_sql('?1')})",
        (build_id, *languages),
    )
    conn.execute(
        "INSERT INTO label_texts SELECT n.label_id, n.language, 1 + coalesce((SELECT max(t.rev)"
        " FROM label_texts t WHERE t.label_id = n.label_id AND t.language = n.language), 0),"
        " n.value, n.status FROM temp.build_label_now n WHERE NOT EXISTS (SELECT 1"
        " FROM label_texts t WHERE t.label_id = n.label_id AND t.language = n.language"
        " AND t.value = n.value AND t.status = n.status)"
    )
    conn.execute(
        "INSERT OR REPLACE INTO build_labels SELECT ?, n.label_id, n.language, t.rev"
        " FROM temp.build_label_now n JOIN label_texts t ON t.label_id = n.label_id"
        " AND t.language = n.language AND t.value = n.value AND t.status = n.status",
        (build_id,),
    )
    conn.execute("DELETE FROM temp.build_label_now")


def _delete_build_rows(conn: sqlite3.Connection, build_id: int) -> None:
    for table in BUILD_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE build_id = ?", (build_id,))
    conn.execute("DELETE FROM search_index WHERE build_id = ?", (build_id,))
    conn.execute("DELETE FROM staged_labels WHERE build_id = ?", (build_id,))
    conn.execute("DELETE FROM build_labels WHERE build_id = ?", (build_id,))
    conn.execute("DELETE FROM builds WHERE id = ?", (build_id,))
