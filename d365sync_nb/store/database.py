"""The SQLite (WAL) file of one environment's cache: connections, threads, schema, migrations.

All writes go through one connection on one worker thread (``await db.run(fn, ...)``) inside
``with db.write()`` (the writer lock and one transaction). Reads use a connection per thread
(``db.rows(...)``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from d365sync_nb.errors import D365SyncError
from d365sync_nb.models import iso, utcnow
from d365sync_nb.store.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

T = TypeVar("T")


def now_iso() -> str:
    """Now, the way every stored timestamp is written (ISO 8601 with a ``Z`` suffix)."""
    return cast(str, iso(utcnow()))


class Database:
    """One cache file: the writer connection and its thread, per-thread readers, the schema."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="d365sync-store")
        self._writer = self._connect()
        try:
            self._create_or_migrate()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    # -- schema ----------------------------------------------------------------------------
    def _create_or_migrate(self) -> None:
        """Create the schema in a new file; bring an older file up to ``SCHEMA_VERSION``."""
        with self._lock:
            conn = self._writer
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            if exists:
                self._migrate(conn)
            conn.executescript(SCHEMA)  # idempotent: adds what a new version creates
            with conn:
                conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Run the steps of every version above the file's, and record the new version."""
        conn.execute("BEGIN IMMEDIATE")  # another process may be opening the same file
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise D365SyncError(
                    f"The cache file {self.path} has schema version {version}, newer than this "
                    f"package knows ({SCHEMA_VERSION}); upgrade d365sync_nb or use another "
                    "cache directory"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for step in MIGRATIONS[target]:
                    conn.execute(step)
            if version < SCHEMA_VERSION:
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'",
                    (str(SCHEMA_VERSION),),
                )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def schema_version(self) -> int:
        row = self.rows("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(row[0][0])

    # -- connections -----------------------------------------------------------------------
    @property
    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """The writer connection, under the writer lock, in one transaction."""
        with self._lock, self._writer:
            yield self._writer

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The writer connection under the writer lock, no transaction opened (reads of the
        writer's own view; ``ATTACH``, which a transaction does not allow)."""
        with self._lock:
            yield self._writer

    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Run a query on this thread's read connection."""
        return self.reader.execute(sql, tuple(params)).fetchall()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the writer thread, off the event loop."""
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
