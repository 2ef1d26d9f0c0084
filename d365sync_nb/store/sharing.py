"""Sharing between environments' cache files: find a complete build of the same modules in
another file, and copy its rows and labels into a build of this one (``sharing_mode``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from d365sync_nb.store.builds import columns_but_build_id
from d365sync_nb.store.database import Database
from d365sync_nb.store.files import read_only_uri


class Sharing:
    """Copies from another environment's cache file into builds of this one."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def copy_from_file(
        self, other_path: str | Path, from_build: int, to_build: int, tables: Iterable[str]
    ) -> dict[str, int]:
        """Copy the rows of ``tables`` of a build in another environment's cache file into
        ``to_build``. Returns the rows copied per table, like :meth:`Builds.copy`."""
        copied: dict[str, int] = {}
        with self._attached(other_path) as conn:
            for table in tables:
                rest = columns_but_build_id(conn, table)
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
            conn.execute("ATTACH DATABASE ? AS other", (read_only_uri(other_path),))
            try:
                with conn:
                    yield conn
            finally:
                conn.execute("DETACH DATABASE other")


def find_shared_build(cache_dir: Path, modules_hash: str, exclude: Path) -> dict[str, Any] | None:
    """A complete build with these modules in another environment's cache file, newest first."""
    best: dict[str, Any] | None = None
    for path in sorted(cache_dir.glob("*.sqlite3")):
        if path.resolve() == exclude.resolve():
            continue
        try:
            conn = sqlite3.connect(read_only_uri(path), uri=True, timeout=5)
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
