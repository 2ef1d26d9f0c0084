"""The local SQLite metadata cache of one environment.

:class:`MetadataStore` composes the parts, each with one reason to change:
``db`` (:class:`Database`: the file, connections, threads, schema and migrations),
``versions`` (:class:`Versions`: global versions and their visible build), ``builds``
(:class:`Builds`: a build's lifecycle, begin to finalize or discard), ``rows``
(:class:`BuildRows`: a build's metadata rows, written and counted), ``sharing``
(:class:`Sharing`: copies from another environment's cache file), ``index``
(:class:`SearchIndex`), ``history`` (:class:`SessionHistory`: recorded sessions, their
request logs, and which are still running) and ``checks`` (:class:`CheckHistory`: a watch's
version checks). ``files`` names cache files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from d365sync_nb.store.builds import Builds
from d365sync_nb.store.checks import CheckHistory
from d365sync_nb.store.database import Database
from d365sync_nb.store.files import store_path
from d365sync_nb.store.history import SessionHistory
from d365sync_nb.store.liveness import LIVE_SESSIONS
from d365sync_nb.store.rows import BuildRows
from d365sync_nb.store.search import SearchIndex
from d365sync_nb.store.sharing import Sharing, find_shared_build
from d365sync_nb.store.versions import Versions

T = TypeVar("T")


class MetadataStore:
    """The cache file of one environment: ``db``, ``versions``, ``builds``, ``rows``,
    ``sharing``, ``index``, ``history``, ``checks``."""

    def __init__(self, path: str | Path, *, repair: bool = False) -> None:
        self.db = Database(path, repair=repair)
        self.path = self.db.path
        self.versions = Versions(self.db)
        self.builds = Builds(self.db)
        self.rows = BuildRows(self.db)
        self.sharing = Sharing(self.db)
        self.index = SearchIndex(self.db, self.versions)
        self.history = SessionHistory(self.db)
        self.checks = CheckHistory(self.db)

    def __repr__(self) -> str:
        return f"MetadataStore({str(self.path)!r})"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (a store method) on the writer thread, off the event loop."""
        return await self.db.run(fn, *args)

    def close(self) -> None:
        self.db.close()


__all__ = ["LIVE_SESSIONS", "MetadataStore", "find_shared_build", "store_path"]
