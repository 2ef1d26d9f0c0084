"""The http record and the request log agree exactly with what the service saw."""

from __future__ import annotations

import json
import subprocess
import sys

from d365sync_nb.models import PHASES, SyncStatus
from tests.support import expected


async def full_sync(manager):
    result = await manager.start(strategy="full")
    return await manager.wait(result.session_id)


def assert_matches_the_service(session, stats, log) -> None:
    """Every attempt counted once, each status by its code, a drop as a transport error."""
    http = session.http
    seen = {k: v for k, v in stats["responses_by_status"].items() if v and k != "dropped"}
    assert http.requests == stats["total_requests"] == session.requests
    assert http.by_status == seen
    assert http.transport_errors == stats["responses_by_status"]["dropped"]
    assert sum(http.by_status.values()) + http.transport_errors == http.requests
    assert len(log) == http.requests
    assert sum(1 for row in log if row["attempt"] > 1) == http.retries
    assert sum(p.requests for p in http.by_phase.values()) == http.requests
    assert sum(1 for row in log if row["status"] == 429) == http.throttled
    assert http.bytes_received == sum(row["bytes"] for row in log) > 0
    assert http.latency_ms is not None and 0 < http.latency_ms["p50"] <= http.latency_ms["max"]


async def test_the_record_is_exact_under_faults_with_drops(emulator, make_manager):
    emulator.configure(fault_rate=0.05)
    emulator.reset_stats()
    manager = make_manager(emulator.base_url)
    session = await full_sync(manager)
    assert session.status == SyncStatus.COMPLETED, session.error
    stats = emulator.stats()
    log = manager.get_request_log(session.session_id)
    assert stats["responses_by_status"]["503"] > 5 and stats["responses_by_status"]["dropped"] > 5
    assert_matches_the_service(session, stats, log)
    assert (
        session.http.retries
        == stats["responses_by_status"]["503"] + stats["responses_by_status"]["dropped"]
    )
    dropped = [row for row in log if row["error"] == "dropped"]
    assert dropped and all(row["status"] is None for row in dropped)
    assert all(row["retry_cause"] == "transport" for row in dropped)
    assert {row["retry_cause"] for row in log if row["status"] == 503} == {"503"}
    assert session.http.by_phase["version_check"].requests >= 3
    assert session.http.by_phase["labels"].seconds is not None
    # filters, and ids support can use
    only_503 = manager.get_request_log(session.session_id, status="503")
    assert len(only_503) == stats["responses_by_status"]["503"]
    labels = manager.get_request_log(session.session_id, phase="labels", status="2xx")
    assert labels and all(r["endpoint"] == "Labels" and r["status"] == 200 for r in labels)
    assert all(r["activity_id"] and len(r["request_id"]) == 36 for r in labels)
    assert all(r["started_at"].endswith("Z") for r in labels)
    # the record survives the process: history reads it back from the cache file
    stored = manager.store.history.get(session.session_id)
    assert stored is not None and stored.http == session.http


async def test_the_record_is_exact_under_a_429_storm(emulator, make_manager):
    emulator.configure(max_concurrency=3, retry_after=0.05, latency_ms=5)
    emulator.reset_stats()
    manager = make_manager(emulator.base_url, concurrency=16)
    session = await full_sync(manager)
    assert session.status == SyncStatus.COMPLETED, session.error
    assert session.counts["labels"] == expected(emulator)["labels"]
    stats = emulator.stats()
    log = manager.get_request_log(session.session_id)
    assert stats["responses_by_status"]["429"] > 5  # the limiter learns the level: a few
    assert_matches_the_service(session, stats, log)
    assert session.http.retry_wait_seconds >= 0.05 * session.http.throttled * 0.9
    concurrency = session.http.concurrency
    assert concurrency is not None and concurrency["start"] == 16
    assert concurrency["min"] < 16 and concurrency["changes"]
    throttled = manager.get_request_log(session.session_id, status="429")
    assert all(row["retry_cause"] == "429" for row in throttled)


def test_cli_sync_json_counts_every_request_the_command_made(emulator, tmp_path):
    emulator.configure(fault_rate=0.05)
    emulator.reset_stats()
    done = subprocess.run(
        [sys.executable, "-m", "d365sync_nb", "sync", "--base-url", emulator.base_url,
         "--cache-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stats = emulator.stats()
    assert result["http"]["requests"] == stats["total_requests"] == result["requests"]
    assert result["http"]["transport_errors"] == stats["responses_by_status"]["dropped"]
    history = subprocess.run(
        [sys.executable, "-m", "d365sync_nb", "history", "--base-url", emulator.base_url,
         "--cache-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    entry = json.loads(history.stdout)[0]
    assert entry["http"]["requests"] == stats["total_requests"]


async def test_request_logs_are_kept_for_the_most_recent_sessions_only(emulator, make_manager):
    manager = make_manager(emulator.base_url)
    manager.request_log_sessions = 2
    first = await full_sync(manager)
    for _ in range(2):
        result = await manager.start(strategy="full_without_labels", force=True)
        await manager.wait(result.session_id)
    import pytest

    from d365sync_nb.errors import RequestLogUnavailable

    with pytest.raises(RequestLogUnavailable, match=r"pruned.*2 most recent"):
        manager.get_request_log(first.session_id)
    assert manager.get_sync_session(first.session_id).http.requests > 800  # aggregates stay
    latest = manager.get_session_history(limit=1)[0]
    assert len(manager.get_request_log(latest.session_id)) == latest.http.requests
    assert manager.get_request_log(latest.session_id, status="418") == []  # kept, no match
    assert manager.store.history.request_log_pruned(first.session_id)
    assert not manager.store.history.request_log_pruned(latest.session_id)


async def test_diagnose_names_throttling_drops_latency_and_the_longest_phase(
    emulator, make_manager
):
    from d365sync_nb.diagnostics import compare, diagnose_session

    manager = make_manager(emulator.base_url)
    healthy = await full_sync(manager)
    verdict = diagnose_session(manager, healthy.session_id)
    assert verdict.verdict.startswith("healthy: no throttling, no dropped connections")
    assert "p95 latency" in verdict.verdict and "labels took" in verdict.verdict
    assert verdict.failed_requests == verdict.retried_requests == verdict.findings == []

    emulator.configure(max_concurrency=3, retry_after=0.05, latency_ms=5, fault_rate=0.05)
    result = await manager.start(strategy="full", force=True)
    rough = await manager.wait(result.session_id)
    found = diagnose_session(manager, rough.session_id)
    http = rough.http
    assert f"throttled: {http.throttled} x 429 (Retry-After honoured, " in found.verdict
    assert " s of waits across requests; concurrency lowered to " in found.verdict
    assert f"{http.by_status['503']} x 503 retried" in found.verdict
    dropped = found.facts["errors_by_kind"]["dropped"]
    assert f"{dropped} dropped connection" in found.verdict
    assert any("throttled" in f for f in found.findings)
    assert found.failed_requests == []  # all retried: the sync completed
    assert found.retried_requests and all(r["request_id"] for r in found.retried_requests)
    assert str(found).startswith(f"Session {rough.session_id} (completed): ")

    rows = compare(healthy, rough)
    assert [r["phase"] for r in rows] == [p.value for p in PHASES]
    labels = next(r for r in rows if r["phase"] == "labels")
    assert labels["b_throttled"] == http.by_phase["labels"].throttled > 0
    assert labels["a_throttled"] == 0
    assert labels["requests_ratio"] == round(labels["b_requests"] / labels["a_requests"], 2)


async def test_diagnose_an_adaptive_throttled_run_says_where_the_limit_settled(
    emulator, make_manager
):
    from d365sync_nb.diagnostics import diagnose_session

    emulator.configure(max_concurrency=3, retry_after=0.05, latency_ms=5)
    manager = make_manager(emulator.base_url, concurrency=None)
    session = await full_sync(manager)
    assert session.status == SyncStatus.COMPLETED, session.error
    limits = session.http.concurrency
    assert limits["mode"] == "adaptive" and limits["min"] < limits["start"] == 8
    found = diagnose_session(manager, session.session_id)
    assert (
        f"s of waits across requests; concurrency lowered to {limits['min']}, "
        f"{limits['final']} at the end)" in found.verdict
    )
    assert found.findings[0].startswith(
        "The service throttled this client (429): the adaptive concurrency found its level "
        f"({limits['final']} in flight at the end)"
    )
    assert "lower --concurrency" not in " ".join(found.findings)
    assert found.facts["concurrency"]["ceiling"] == 64


def test_failure_advice_reads_status_codes_not_digits_inside_ids() -> None:
    """Activity and request ids are hex: one containing "401" or "429" is not a 401 or a 429."""
    from d365sync_nb.diagnostics import _failure_advice

    html = (
        "GET http://127.0.0.1:1/Metadata/DataEntities: the answer is an HTML page, not JSON "
        "(ms-dyn-aid c8401f77-6131-4429-aef8-82e136f83afd, x-ms-client-request-id "
        "0c4ca2c7-bf75-403d-8535-7c10bd2568bd)"
    )
    assert _failure_advice(html).startswith("The answers are not the D365 metadata service")
    assert _failure_advice("401 Unauthorized: token refused").startswith("Authentication failed")
    assert _failure_advice("429 Too Many Requests after 30 waits").startswith("Still throttled")
