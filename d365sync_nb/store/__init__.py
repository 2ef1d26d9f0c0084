"""The local SQLite metadata cache of one environment.

:class:`MetadataStore` composes the parts, each with one reason to change:
``db`` (:class:`Database`: the file, connections, threads, schema and migrations), ``builds``
(:class:`Builds`: versions, builds and their metadata), ``index`` (:class:`SearchIndex`) and
``history`` (:class:`SessionHistory`: recorded sessions and which are still running) and
``checks`` (:class:`CheckHistory`: a watch's version checks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from d365sync_nb.store.builds import Builds, find_shared_build, store_path
from d365sync_nb.store.checks import CheckHistory
from d365sync_nb.store.database import Database
from d365sync_nb.store.history import SessionHistory
from d365sync_nb.store.liveness import LIVE_SESSIONS
from d365sync_nb.store.search import SearchIndex

T = TypeVar("T")


class MetadataStore:
    """The cache file of one environment: ``db``, ``builds``, ``index``, ``history``,
    ``checks``."""

    def __init__(self, path: str | Path, *, repair: bool = False) -> None:
        self.db = Database(path, repair=repair)
        self.path = self.db.path
        self.builds = Builds(self.db)
        self.index = SearchIndex(self.db, self.builds)
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
