"""The SQLite (WAL) file of one environment's cache: connections, threads, schema, migrations.

All writes go through one connection on one worker thread (``await db.run(fn, ...)``) inside
``with db.write()`` (the writer lock and one transaction). Reads use a connection per thread
(``db.rows(...)``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from d365sync_nb.errors import CacheDamagedError, CacheError, D365SyncError
from d365sync_nb.models import iso, utcnow
from d365sync_nb.store.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

T = TypeVar("T")
EFFECTIVE_IDS = os.access in os.supports_effective_ids
OPEN_WAIT_SECONDS = 30.0  # how long to wait for another process creating the same file
DAMAGE = ("file is not a database", "malformed")  # SQLITE_NOTADB, SQLITE_CORRUPT


def now_iso() -> str:
    """Now, the way every stored timestamp is written (ISO 8601 with a ``Z`` suffix)."""
    return cast(str, iso(utcnow()))


class Database:
    """One cache file: the writer connection and its thread, per-thread readers, the schema.

    Opening checks the file: a path that cannot hold it, or a read-only one, is a
    ``CacheError``; a damaged file is a ``CacheDamagedError``, unless ``repair`` moves it aside
    (kept, as ``<name>.damaged-<time>``, named by :attr:`moved_aside`) and starts a new one.
    Two processes creating the same new file wait for each other.
    """

    def __init__(self, path: str | Path, *, repair: bool = False) -> None:
        self.path = Path(path)
        self.moved_aside: Path | None = None
        _check_directory(self.path.parent)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []  # every thread's, to close them all
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="d365sync-store")
        siblings = _wal_files(self.path)
        try:
            self._writer = self._open()
        except CacheDamagedError:
            if not repair:
                self._executor.shutdown()
                for extra in _wal_files(self.path) - siblings:  # leave it as it was found
                    extra.unlink(missing_ok=True)
                raise
            self.moved_aside = _move_aside(self.path)
            self._writer = self._open()
        except BaseException:
            self._executor.shutdown()
            raise

    def _open(self) -> sqlite3.Connection:
        """Connect, check an existing file and bring its schema up to date (retrying while
        another process creates the same new file)."""
        existed = self.path.exists() and self.path.stat().st_size > 0
        deadline = time.monotonic() + OPEN_WAIT_SECONDS
        while True:
            conn: sqlite3.Connection | None = None
            try:
                conn = self._connect()
                if existed:
                    _check_integrity(conn)
                self._create_or_migrate(conn)
                return conn
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                if _is_locked(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise _cache_error(self.path, exc) from None

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
    def _create_or_migrate(self, conn: sqlite3.Connection) -> None:
        """Create the schema in a new file; bring an older file up to ``SCHEMA_VERSION``."""
        with self._lock:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            if exists:
                self._migrate(conn)
            conn.executescript(SCHEMA)  # idempotent: adds what a new version creates
            _check_columns(conn)
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
        """This thread's read connection (opened on first use, closed by :meth:`close`)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
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
        try:
            return self.reader.execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as exc:
            raise _cache_error(self.path, exc) from None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the writer thread, off the event loop. A file problem met on
        the way (a full disk, a read-only or damaged file) is one ``CacheError`` line."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(*args))
        except sqlite3.OperationalError as exc:
            raise _cache_error(self.path, exc) from None
        except sqlite3.DatabaseError as exc:
            if any(word in str(exc) for word in DAMAGE):
                raise _cache_error(self.path, exc) from None
            raise

    def close(self) -> None:
        """Close the writer and every thread's reader (readers were opened shareable)."""
        self._executor.shutdown(wait=True)
        with self._lock:
            self._writer.close()
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._local.conn = None


def _check_directory(directory: Path) -> None:
    """Make the cache directory, or say in one line why it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CacheError(f"The cache directory {directory} is a file, not a directory") from None
    except NotADirectoryError:
        raise CacheError(
            f"The cache directory {directory} is inside a file, not a directory"
        ) from None
    except OSError as exc:
        raise CacheError(
            f"Cannot create the cache directory {directory}: {exc.strerror or exc}"
        ) from None
    if not directory.is_dir():
        raise CacheError(f"The cache directory {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK, effective_ids=EFFECTIVE_IDS):
        raise CacheError(
            f"The cache directory {directory} is read-only; choose another with --cache-dir "
            "(or D365SYNC_CACHE_DIR)"
        )


def _check_integrity(conn: sqlite3.Connection) -> None:
    """A damaged file fails here (garbage over its header, or truncated), not in mid-sync."""
    row = conn.execute("PRAGMA quick_check(1)").fetchone()
    if row is None or row[0] != "ok":
        detail = " ".join(str(row[0]).split())[:120] if row else ""  # one line
        raise sqlite3.DatabaseError(f"database disk image is malformed ({detail})")


@functools.cache
def _expected_columns() -> dict[str, frozenset[str]]:
    """Each table's columns in a file made by this package (from the schema, in memory)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        return _columns(conn)
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection) -> dict[str, frozenset[str]]:
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        table: frozenset(row[1] for row in conn.execute(f'PRAGMA table_info("{table}")'))
        for table in tables
    }


def _check_columns(conn: sqlite3.Connection) -> None:
    """A file whose tables lack columns of its stated schema version (made by another build of
    the package, or edited by hand) is damaged: it would fail every write, not once at open."""
    found = _columns(conn)
    missing = sorted(
        f"{table}.{column}"
        for table, columns in _expected_columns().items()
        for column in columns - found.get(table, frozenset())
    )
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = ", ".join(missing[:3]) + more
        raise sqlite3.DatabaseError(
            f"malformed schema: version {SCHEMA_VERSION} lacks the column(s) {shown}"
        )


def _is_locked(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _cache_error(path: Path, exc: sqlite3.Error) -> CacheError:
    """One line naming the file and what is wrong with it."""
    text = str(exc)
    if any(word in text for word in DAMAGE):
        return CacheDamagedError(
            f"The cache file {path} is damaged ({text}); `d365sync sync` (or a notebook "
            "start) moves it aside and builds a new one"
        )
    if "readonly" in text or (
        path.exists() and not os.access(path, os.W_OK, effective_ids=EFFECTIVE_IDS)
    ):
        return CacheError(
            f"The cache file {path} is read-only; make it writable or use another --cache-dir"
        )
    if "disk is full" in text or "disk I/O" in text:
        return CacheError(f"Cannot write the cache file {path}: {text}; free some space")
    if "unable to open" in text:
        return CacheError(
            f"Cannot open the cache file {path} ({text}): is the path a directory or a device?"
        )
    return CacheError(f"The cache file {path} cannot be used: {text}")


def _wal_files(path: Path) -> set[Path]:
    """The ``-wal`` and ``-shm`` files beside a database file that exist now."""
    return {p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()}


def _move_aside(path: Path) -> Path:
    """Keep a damaged file (and its WAL files) under a new name; return where it went."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{target}{suffix}"))
    return target
