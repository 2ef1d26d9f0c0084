"""The cache file itself: a version 1 file opens and migrates; timestamps read back as ``Z``."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from d365sync_nb.d365.request_log import REQUEST_COLUMNS, STORED_REQUEST_COLUMNS, RequestRow
from d365sync_nb.models import (
    HttpRecord,
    PhaseStatus,
    SyncPhase,
    SyncSession,
    SyncStatus,
    SyncStrategy,
)
from d365sync_nb.store import MetadataStore
from d365sync_nb.store.schema import SCHEMA_VERSION

FIXTURE = Path(__file__).parent / "data" / "v1-cache.sqlite3"
# The fixture is a real cache written by version 1 of the package (commit 71da802): an
# entities_only sync of the small demo dataset, schema_version 1, no session_phases.note.
SESSION_ID = "d7a86f7d-f0c3-41de-ae7b-6eb9b2fb879c"
PENDING_ID = "66666666-7777-8888-9999-000000000000"


def make_v1_file(path: Path) -> None:
    """A copy of the version 1 cache, plus a 'pending' session (a status that no longer exists)
    whose process is gone."""
    shutil.copyfile(FIXTURE, path)
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO sessions(session_id, environment, strategy, status, started_at)"
            " VALUES (?, 'https://contoso.example', 'full', 'pending',"
            " '2026-03-01T09:00:00.000001+00:00')",
            (PENDING_ID,),
        )
        conn.commit()
    finally:
        conn.close()


def stored_schema_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(
            conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        )
    finally:
        conn.close()


def phase_columns(store: MetadataStore) -> list[str]:
    return [r[1] for r in store.db.rows("PRAGMA table_info(session_phases)")]


def test_a_version_1_file_opens_migrates_and_round_trips_a_phase_note(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    make_v1_file(path)

    store = MetadataStore(path)
    try:
        assert stored_schema_version(path) == SCHEMA_VERSION == 6
        assert "note" in phase_columns(store)
        assert store.checks.count() == 0  # the checks table of schema 6 exists
        session_columns = [r[1] for r in store.db.rows("PRAGMA table_info(sessions)")]
        assert session_columns[-2:] == ["http_json", "request_log_pruned"]
        # it sent a request and kept no log (v1 had none): its log is recorded as pruned
        assert store.history.request_log_pruned(SESSION_ID)
        assert not store.history.request_log_pruned(PENDING_ID)  # it sent nothing

        session = store.history.get(SESSION_ID)
        assert isinstance(session, SyncSession)
        assert session.status == SyncStatus.COMPLETED
        assert session.strategy == SyncStrategy.ENTITIES_ONLY and session.requests == 1
        assert session.http.requests == 1 and session.http.by_status == {}  # no record in v1
        assert session.counts["data_entities"] == 100
        entities = session.phases[SyncPhase.ENTITIES]
        assert entities.status == PhaseStatus.COMPLETED and entities.items_processed == 100
        assert entities.seconds is not None and entities.seconds >= 0
        assert all(p.note is None for p in session.phases.values())
        assert session.phases[SyncPhase.SCHEMAS].status == PhaseStatus.SKIPPED

        # 'pending' (gone from SyncStatus) was treated as running: now it is, and it is
        # recognized as interrupted like any session whose process is gone
        assert store.history.mark_interrupted("interrupted") == [PENDING_ID]
        assert store.history.get(PENDING_ID).status == SyncStatus.FAILED  # type: ignore[union-attr]

        session.phases[SyncPhase.LABELS].status = PhaseStatus.REUSED
        session.phases[SyncPhase.LABELS].note = "copied 42 labels from the cache of contoso-test"
        store.history.save(session)
    finally:
        store.close()

    reopened = MetadataStore(path)  # a second open finds the version: nothing to migrate
    try:
        assert stored_schema_version(path) == SCHEMA_VERSION
        assert reopened.history.request_log_pruned(SESSION_ID)  # a save keeps the state
        again = reopened.history.get(SESSION_ID)
        assert again is not None
        labels = again.phases[SyncPhase.LABELS]
        assert labels.status == PhaseStatus.REUSED
        assert labels.note == "copied 42 labels from the cache of contoso-test"
        assert again.phases[SyncPhase.ENTITIES].note is None
        assert reopened.history.count() == 2
        assert reopened.history.latest_id() == SESSION_ID
    finally:
        reopened.close()


def test_a_new_file_gets_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "new.sqlite3"
    store = MetadataStore(path)
    try:
        assert stored_schema_version(path) == SCHEMA_VERSION
        assert phase_columns(store)[-1] == "note"  # same column order as a migrated file
        request_columns = tuple(r[1] for r in store.db.rows("PRAGMA table_info(requests)"))
        assert request_columns == STORED_REQUEST_COLUMNS  # the table is the record's shape
        assert store.history.load() == [] and store.history.latest_id() is None
    finally:
        store.close()


def test_loaded_sessions_have_z_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    make_v1_file(path)  # rows written as +00:00 ...
    store = MetadataStore(path)
    try:
        old = store.history.get(SESSION_ID)
        assert old is not None
        fresh = SyncSession(session_id=PENDING_ID, environment="e", strategy=SyncStrategy.FULL)
        fresh.phases[SyncPhase.ENTITIES].started_at = fresh.started_at
        fresh.status, fresh.completed_at = SyncStatus.COMPLETED, fresh.started_at
        fresh.phases[SyncPhase.ENTITIES].completed_at = fresh.started_at
        store.history.save(fresh)  # ... and rows written now, as ...Z
        raw = store.db.rows(
            "SELECT s.started_at, s.completed_at, p.started_at, p.completed_at FROM sessions s"
            " JOIN session_phases p USING (session_id) WHERE session_id = ? AND p.phase = ?",
            (PENDING_ID, "entities"),
        )
        assert all(stamp.endswith("Z") for stamp in raw[0]), tuple(raw[0])
        new = store.history.get(PENDING_ID)
        assert new is not None

        for session in (old, new):
            data = session.to_dict()
            assert data["started_at"].endswith("Z"), data["started_at"]
            assert data["completed_at"].endswith("Z"), data["completed_at"]
            entities = data["phases"]["entities"]
            assert entities["started_at"].endswith("Z")
            assert entities["completed_at"].endswith("Z")
            stamps = [
                p[key]
                for p in data["phases"].values()
                for key in ("started_at", "completed_at")
                if p[key] is not None
            ]
            assert stamps and all(s.endswith("Z") for s in stamps)
    finally:
        store.close()


def test_close_closes_every_threads_reader(tmp_path: Path) -> None:
    import sqlite3
    import threading

    store = MetadataStore(tmp_path / "env.sqlite3")
    readers = []

    def read() -> None:
        store.history.count()
        readers.append(store.db.reader)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    store.history.count()
    store.close()
    assert len(readers) == 1
    with pytest.raises(sqlite3.ProgrammingError):
        readers[0].execute("SELECT 1")


def test_a_version_3_file_migrates_its_pruned_state_and_old_http_record(tmp_path: Path) -> None:
    """A v3 file: a session whose rows were pruned becomes pruned; one that kept its log does
    not; its ``http_json`` written with ``throttle_wait_seconds`` reads as retry waits."""
    path = tmp_path / "v3.sqlite3"
    make_v1_file(path)
    MetadataStore(path).close()  # now at the current version: take it back to version 3
    old_http = (
        '{"requests": 2, "throttle_wait_seconds": 1.5, "by_phase": {"labels": {"requests": 2,'
        ' "retries": 1, "throttled": 1, "transport_errors": 0, "throttle_wait_seconds": 1.5,'
        ' "seconds": 0.25}}}'
    )
    conn = sqlite3.connect(path)
    try:
        conn.execute("ALTER TABLE sessions DROP COLUMN request_log_pruned")
        conn.execute("ALTER TABLE requests DROP COLUMN language")  # version 5's
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        conn.execute(
            "UPDATE sessions SET requests = 2, http_json = ? WHERE session_id = ?",
            (old_http, PENDING_ID),
        )
        row = RequestRow(1.0, "labels", "Labels", 200, None, 1, 5.0, 10, None, "r1", None)
        conn.execute(  # a version 3 row: no language
            f"INSERT INTO requests VALUES ({', '.join('?' * (len(STORED_REQUEST_COLUMNS) - 1))})",
            (PENDING_ID, 1, *row[:-1]),
        )
        conn.commit()
    finally:
        conn.close()

    store = MetadataStore(path)
    try:
        assert stored_schema_version(path) == SCHEMA_VERSION
        assert store.history.request_log_pruned(SESSION_ID)
        assert not store.history.request_log_pruned(PENDING_ID)
        [logged] = store.history.requests(PENDING_ID)
        assert tuple(logged) == REQUEST_COLUMNS and logged["request_id"] == "r1"
        session = store.history.get(PENDING_ID)
        assert session is not None and session.requests == session.http.requests == 2
        assert session.http.retry_wait_seconds == 1.5
        labels = session.http.phase("labels")
        assert (labels.retries, labels.throttled, labels.retry_wait_seconds) == (1, 1, 1.5)
        assert labels.seconds == 0.25 and session.http.phase("schemas").requests == 0
        assert "throttle_wait_seconds" not in session.http.model_dump_json()

        assert store.history.prune_request_logs(keep=0) == 0  # a running session keeps its log
        assert not store.history.request_log_pruned(PENDING_ID)
        assert store.history.mark_interrupted("interrupted") == [PENDING_ID]
        assert store.history.prune_request_logs(keep=0) == 1
        assert store.history.request_log_pruned(PENDING_ID)
        assert store.history.requests(PENDING_ID) == []
    finally:
        store.close()


def test_http_record_reads_both_wait_names() -> None:
    assert HttpRecord.model_validate({"throttle_wait_seconds": 2.0}).retry_wait_seconds == 2.0
    assert HttpRecord.model_validate({"retry_wait_seconds": 3.0}).retry_wait_seconds == 3.0
