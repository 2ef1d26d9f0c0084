"""The session recorder: writes a session's snapshots, its final state and its request log to
the environment's cache, without holding up the session.

Snapshots are saved in the background at each phase transition (a failure is logged and kept);
the final save waits for them, notes any that failed on the session, writes the rest of the
request log and keeps the logs of the most recent sessions only. A session whose final state the
cache refused stays readable from memory (:meth:`SessionRecorder.unsaved`).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from d365sync_nb.d365.client import D365MetadataClient
from d365sync_nb.d365.request_log import RequestRow
from d365sync_nb.models import SyncSession
from d365sync_nb.store import MetadataStore

log = logging.getLogger(__name__)


class SessionRecorder:
    """Persists the sessions of one cache file; ``request_log_sessions``: how many of the most
    recent sessions keep their request log (0: none is written)."""

    def __init__(self, store: MetadataStore, request_log_sessions: int) -> None:
        self.store = store
        self.request_log_sessions = request_log_sessions
        self._unsaved: dict[str, SyncSession] = {}  # ended, but the cache refused the record
        self._saves: set[asyncio.Future[None]] = set()
        self._save_failures: dict[str, list[BaseException]] = {}

    def unsaved(self, session_id: str) -> SyncSession | None:
        """An ended session whose final state the cache refused (kept in memory)."""
        return self._unsaved.get(session_id)

    def persist(self, session: SyncSession, *, client: D365MetadataClient) -> None:
        """Save a snapshot and the new request-log rows at a phase transition (in the
        background; failures are kept)."""
        snapshot, rows = session.model_copy(deep=True), client.stats.drain()
        future = asyncio.ensure_future(self.store.run(self._save, snapshot, rows))
        self._saves.add(future)
        future.add_done_callback(functools.partial(self._saved, session.session_id))

    def _saved(self, session_id: str, future: asyncio.Future[None]) -> None:
        self._saves.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("session %s: a progress snapshot was not saved", session_id, exc_info=exc)
            self._save_failures.setdefault(session_id, []).append(exc)

    def _save(self, session: SyncSession, rows: list[RequestRow]) -> None:
        """On the store's writer thread: the session's row, then its new request-log rows
        (none are written when no session keeps a log)."""
        self.store.history.save(session)
        if self.request_log_sessions:
            self.store.history.write_requests(session.session_id, rows)

    async def final_save(self, session: SyncSession, client: D365MetadataClient) -> None:
        """Record the final state and the rest of the request log (keeping the logs of the
        most recent sessions only); a snapshot or the record that could not be saved is logged
        and noted on the session (which stays readable from memory)."""
        await asyncio.gather(*list(self._saves), return_exceptions=True)  # logged by _saved
        failed = self._save_failures.pop(session.session_id, [])
        if failed:
            session.message = _join(
                session.message,
                f"{len(failed)} progress snapshot(s) were not saved ({_error_text(failed[0])})",
            )
        try:
            rows = client.stats.drain()
            await self.store.run(self._save, session.model_copy(deep=True), rows)
            await self.store.run(self.store.history.prune_request_logs, self.request_log_sessions)
        except Exception as exc:
            log.error("session %s: its final state was not saved", session.session_id, exc_info=exc)
            session.message = _join(
                session.message, f"its final state was not saved in the cache ({_error_text(exc)})"
            )
            self._unsaved[session.session_id] = session


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second
