"""The five assistant tools against the embedded emulator (loopback HTTP, real SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from d365sync_nb import connect, tools
from d365sync_nb.connection import Connection, default_connection, registry
from d365sync_nb.models import SyncStrategy
from tests.support import apoll

Answer = dict[str, Any]
SYNC_TOOLS = [
    "d365fo_start_sync",
    "d365fo_wait_sync",
    "d365fo_get_sync_progress",
    "d365fo_cancel_sync",
    "d365fo_list_sync_sessions",
    "d365fo_get_sync_history",
]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real profiles file or D365FO_* variables leak into the tests."""
    for var in ("D365FO_BASE_URL", "D365FO_CLIENT_ID", "D365FO_TENANT_ID", "D365FO_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("D365SYNC_PROFILES", str(tmp_path / "no-profiles.toml"))
    monkeypatch.setenv("D365SYNC_CACHE_DIR", str(tmp_path / "default-cache"))


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Connection]:
    """An emulator (5 ms per request) bound as the tools' default connection."""
    conn = connect(demo=True, scale="small", cache_dir=tmp_path / "cache", latency_ms=5)
    try:
        with default_connection(conn):
            yield conn
    finally:
        for conn_ in [conn, *registry.connections()]:
            for session in conn_.manager.get_active_sessions():
                await conn_.manager.cancel_sync_session(session.session_id)
        registry.close_opened()
        conn.close()


async def run_to_end(session_id: str, profile: str | None = None) -> Answer:
    answer = await apoll(
        lambda: tools.d365fo_get_sync_progress(session_id, profile=profile),
        lambda a: not a["success"] or not a["summary"]["is_running"],
    )
    assert answer["success"], answer
    return answer


async def start_and_reach_labels(conn: Connection, latency_ms: float = 50) -> str:
    """Start a 'full' sync slowed down enough to still be running after we look at it."""
    conn.emulator.configure(latency_ms=latency_ms)
    started = await tools.d365fo_start_sync("full")
    assert started["success"], started
    sid = started["session_id"]
    await apoll(
        lambda: tools.d365fo_get_sync_progress(sid),
        lambda a: (
            a["summary"]["current_phase"] == "labels"
            and a["session"]["phases"]["labels"]["items_processed"] > 0
        ),
    )
    return sid


def assert_failure(answer: Answer, tool: str, *needles: str) -> None:
    assert answer["success"] is False, answer
    assert answer["tool"] == tool
    assert isinstance(answer["arguments"], dict)
    for needle in needles:
        assert needle in answer["error"], answer["error"]
    json.dumps(answer)  # JSON-ready


async def test_start_then_poll_to_completion(demo: Connection) -> None:
    started = await tools.d365fo_start_sync("full")
    assert started["success"] is True
    sid = started["session_id"]
    assert sid and started["up_to_date"] is False
    assert started["strategy"] == "full" and started["global_version_id"] == 1
    assert "d365fo_wait_sync" in started["instructions"] and sid in started["instructions"]
    assert "d365fo_cancel_sync" in started["instructions"]

    done = await run_to_end(sid)
    summary, session = done["summary"], done["session"]
    assert summary["status"] == "completed" and summary["progress_percent"] == 100.0
    assert summary["is_running"] is False
    assert summary["estimated_remaining_seconds"] == 0.0
    assert session["session_id"] == sid and session["initiated_by"] == "assistant"
    assert session["counts"] == demo.emulator.dataset.expected_counts()
    assert set(session["phases"]) == {
        "initializing", "version_check", "entities", "schemas",
        "enumerations", "labels", "indexing", "finalizing",
    }  # fmt: skip
    assert all(p["status"] in ("completed", "skipped") for p in session["phases"].values())
    assert session["completed_at"] and session["error"] is None
    assert done["message"].startswith("Completed in")
    assert done["diagnosis"].startswith("healthy: no throttling, no dropped connections")
    assert "p95 latency" in done["diagnosis"] and "labels took" in done["diagnosis"]
    assert session["http"]["requests"] == demo.emulator.stats()["total_requests"]
    json.dumps(done)

    # a finished session is read back from the recorded history, same answer
    again = await tools.d365fo_get_sync_progress(sid.upper())
    assert again["session"]["counts"] == session["counts"]
    assert again["summary"]["status"] == "completed"


async def test_up_to_date_answer(demo: Connection) -> None:
    first = await tools.d365fo_start_sync()
    assert first["strategy"] == "full_without_labels"
    done = await run_to_end(first["session_id"])
    counts = done["session"]["counts"]
    expected = demo.emulator.dataset.expected_counts()
    assert counts["data_entities"] == expected["data_entities"]
    assert counts["properties"] == expected["properties"] and counts["labels"] == 0

    second = await tools.d365fo_start_sync("full_without_labels")
    assert second["success"] is True
    assert second["session_id"] is None and second["up_to_date"] is True
    assert second["global_version_id"] == 1
    assert "already up to date" in second["message"]
    assert "no session was started" in second["message"]
    assert "Nothing to follow" in second["instructions"]
    assert "force" not in second["message"]  # the tool has no force argument
    synced = datetime.fromisoformat(second["synced_at"])
    started_at = datetime.fromisoformat(done["session"]["started_at"])
    assert started_at <= synced <= datetime.fromisoformat(done["session"]["completed_at"])
    assert second["synced_at"] in second["message"]
    listed = await tools.d365fo_list_sync_sessions()
    assert listed["total_count"] == 0


async def test_cancel_running_session_and_list(demo: Connection) -> None:
    sid = await start_and_reach_labels(demo)

    running = await tools.d365fo_get_sync_progress(sid)
    assert running["summary"]["is_running"] and "diagnosis" not in running

    listed = await tools.d365fo_list_sync_sessions()
    assert listed["success"] is True
    assert listed["total_count"] == 1 and listed["running_count"] == 1
    [active] = listed["active_sessions"]
    assert active["session_id"] == sid and active["is_running"] is True
    assert active["current_phase"] == "labels" and 0 < active["progress_percent"] < 100
    assert listed["summary"]["has_running_sessions"] is True
    assert listed["summary"]["latest_session_id"] == sid
    assert sid in listed["summary"]["message"]

    conflict = await tools.d365fo_start_sync("full")
    assert_failure(conflict, "d365fo_start_sync", sid, "already syncing")

    cancelled = await tools.d365fo_cancel_sync(sid)
    assert cancelled["success"] is True, cancelled
    assert cancelled["session_id"] == sid and cancelled["status"] == "cancelled"
    assert "Cancelled session" in cancelled["message"]

    after = await tools.d365fo_get_sync_progress(sid)
    assert after["summary"]["status"] == "cancelled" and after["summary"]["is_running"] is False
    assert after["session"]["phases"]["labels"]["status"] == "cancelled"
    assert after["message"].startswith("Cancelled after")
    assert after["diagnosis"].startswith("cancelled, ")

    empty = await tools.d365fo_list_sync_sessions()
    assert empty["total_count"] == 0 and empty["running_count"] == 0
    assert empty["active_sessions"] == []
    assert empty["summary"] == {
        "has_running_sessions": False,
        "latest_session_id": None,
        "message": "No sync session is running.",
    }

    twice = await tools.d365fo_cancel_sync(sid)
    assert_failure(twice, "d365fo_cancel_sync", "already finished (cancelled)", "nothing to cancel")
    assert twice["status"] == "cancelled"


async def test_history_summary_and_limit(demo: Connection) -> None:
    ok = await tools.d365fo_start_sync("full_without_labels")
    await run_to_end(ok["session_id"])
    cancelled = await start_and_reach_labels(demo)
    assert (await tools.d365fo_cancel_sync(cancelled))["success"]
    failing = await start_and_reach_labels(demo)
    demo.emulator.configure(token="now-a-token-is-required")  # label requests get 401
    failed = await run_to_end(failing)
    assert failed["summary"]["status"] == "failed"
    assert "401" in failed["session"]["error"]
    assert failed["message"].startswith("Failed after")
    assert failed["diagnosis"].startswith("failed in labels: ")

    history = await tools.d365fo_get_sync_history()
    assert history["success"] is True and "notice" not in history
    assert history["limit"] == 20 and history["total_count"] == 3
    assert history["recorded_count"] == 3
    rows = history["history"]
    assert [r["session_id"] for r in rows] == [failing, cancelled, ok["session_id"]]
    assert [r["status"] for r in rows] == ["failed", "cancelled", "completed"]
    assert rows[0]["error"] and rows[2]["counts"]["public_entities"] == 80
    summary = history["summary"]
    assert summary["successful_syncs"] == 1
    assert summary["failed_syncs"] == 1 and summary["cancelled_syncs"] == 1
    assert summary["running_syncs"] == 0
    mean = sum(r["duration_seconds"] for r in rows) / 3
    assert summary["average_duration_seconds"] == pytest.approx(mean, abs=1e-3)
    assert summary["last_successful_sync_at"] == rows[2]["completed_at"]

    low = await tools.d365fo_get_sync_history(limit=0)
    assert low["success"] is True and low["limit"] == 1 and low["total_count"] == 1
    assert low["notice"] == "limit 0 is outside 1..100; used 1 instead"
    high = await tools.d365fo_get_sync_history(limit=1000)
    assert high["limit"] == 100 and high["total_count"] == 3
    assert high["notice"] == "limit 1000 is outside 1..100; used 100 instead"
    two = await tools.d365fo_get_sync_history(limit=2)
    assert two["total_count"] == 2 and "notice" not in two
    assert "filters" not in history and "filters" not in two


async def test_history_filters(demo: Connection) -> None:
    first = await tools.d365fo_start_sync("full_without_labels")
    await run_to_end(first["session_id"])
    await demo.manager.wait(first["session_id"])  # its final record is saved, too
    second = await tools.d365fo_start_sync("full")  # adds the labels
    assert second["session_id"], second
    await run_to_end(second["session_id"])
    await demo.manager.wait(second["session_id"])
    a, b = first["session_id"], second["session_id"]

    async def ids(**filters: Any) -> list[str]:
        answer = await tools.d365fo_get_sync_history(**filters)
        assert answer["success"], answer
        assert answer["filters"] == filters
        assert answer["total_count"] == len(answer["history"])
        assert answer["recorded_count"] == 2  # every recorded session, not only the matching
        return [row["session_id"] for row in answer["history"]]

    assert await ids(strategy="full") == [b]
    assert await ids(strategy="full_without_labels") == [a]
    assert await ids(status="completed") == [b, a]
    assert await ids(status="failed") == []
    assert await ids(global_version_id=1) == [b, a] and await ids(global_version_id=2) == []
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert await ids(since=tomorrow) == []
    assert await ids(until=tomorrow) == [b, a]
    started_b = (await tools.d365fo_get_sync_progress(b))["session"]["started_at"]
    assert await ids(since=started_b) == [b]  # since is inclusive
    assert await ids(until=started_b) == [a]  # until is exclusive
    assert await ids(status="completed", strategy="full", since=tomorrow) == []

    only_full = await tools.d365fo_get_sync_history(strategy="full", limit=5)
    summary = only_full["summary"]
    assert summary["successful_syncs"] == 1 and summary["failed_syncs"] == 0
    assert summary["average_duration_seconds"] == only_full["history"][0]["duration_seconds"]

    for arguments, words in (
        ({"status": "bogus"}, "Unknown status 'bogus'; one of: running, completed"),
        ({"strategy": "fastest"}, "Unknown strategy 'fastest'; choose one of: full,"),
        ({"since": "yesterday"}, "since must be a date or time like 2026-11-30"),
        ({"until": "2026-13-01"}, "until must be a date or time"),
        ({"global_version_id": "x"}, "Global version id must be an integer, not 'x'"),
    ):
        bad = await tools.d365fo_get_sync_history(**arguments)
        assert_failure(bad, "d365fo_get_sync_history", words)
        assert "\n" not in bad["error"]
        assert {k: bad["arguments"][k] for k in arguments} == arguments


async def test_bad_inputs_are_failure_values(demo: Connection) -> None:
    strategy = await tools.d365fo_start_sync("bogus")
    assert_failure(strategy, "d365fo_start_sync", "Unknown strategy 'bogus'")
    assert all(s.value in strategy["error"] for s in SyncStrategy)
    assert strategy["arguments"] == {
        "strategy": "bogus",
        "global_version_id": None,
        "profile": None,
        "wait_seconds": None,
    }

    labels_first = await tools.d365fo_start_sync("labels_only")
    assert_failure(labels_first, "d365fo_start_sync", "run 'full_without_labels' or 'full' first")
    version = await tools.d365fo_start_sync(global_version_id=99)
    assert_failure(version, "d365fo_start_sync", "Unknown global version 99")
    huge = await tools.d365fo_start_sync(global_version_id=10**30)
    assert_failure(huge, "d365fo_start_sync", "Global version id must be between 1 and")
    assert "internal error" not in huge["error"].lower()

    malformed = await tools.d365fo_get_sync_progress("not-a-session")
    assert_failure(malformed, "d365fo_get_sync_progress", "UUID", "d365fo_get_sync_history")
    unknown = "00000000-0000-4000-8000-000000000000"
    missing = await tools.d365fo_get_sync_progress(unknown)
    assert_failure(missing, "d365fo_get_sync_progress", f"No sync session with id '{unknown}'")
    assert_failure(await tools.d365fo_cancel_sync(unknown), "d365fo_cancel_sync", "No sync session")
    assert_failure(await tools.d365fo_cancel_sync(""), "d365fo_cancel_sync", "non-empty")

    limit = await tools.d365fo_get_sync_history(limit="many")  # type: ignore[arg-type]
    assert_failure(limit, "d365fo_get_sync_history", "limit must be an integer")

    profile = await tools.d365fo_list_sync_sessions(profile="nope")
    assert_failure(profile, "d365fo_list_sync_sessions", "Unknown profile 'nope'")
    for answer in [
        await tools.d365fo_start_sync(profile="nope"),
        await tools.d365fo_get_sync_progress(unknown, profile="nope"),
        await tools.d365fo_get_sync_history(profile="nope"),
    ]:
        assert answer["success"] is False and "Unknown profile 'nope'" in answer["error"]

    extra = await tools.d365fo_start_sync(force=True)  # type: ignore[call-arg]
    assert_failure(extra, "d365fo_start_sync", "Bad arguments", "force")


async def test_no_default_connection_uses_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = await tools.d365fo_list_sync_sessions()
    assert_failure(empty, "d365fo_list_sync_sessions", "No environment configured", "--demo")

    conn = connect(demo=True, scale="small", cache_dir=tmp_path / "env-cache")
    try:
        monkeypatch.setenv("D365FO_BASE_URL", conn.settings.base_url)
        monkeypatch.setenv("D365SYNC_CACHE_DIR", str(tmp_path / "env-cache"))
        started = await tools.d365fo_start_sync()
        assert started["success"], started
        assert started["environment"] == conn.settings.base_url
        env_conn = registry.connection()
        assert env_conn is registry.connection()  # opened once, cached
        assert env_conn.settings.base_url == conn.settings.base_url  # the D365FO_* environment
        done = await run_to_end(started["session_id"])
        assert done["summary"]["status"] == "completed"
    finally:
        registry.close_opened()
        conn.close()


def _write_profiles(path: Path, base_url: str, cache_dir: Path) -> None:
    path.write_text(
        f"""
[profiles.demo]
base_url = "{base_url}"
client_id = "app-id"
tenant_id = "tenant-id"
client_secret = "PROFILE-SECRET-4f1c"
cache_dir = "{cache_dir.as_posix()}"

[profiles.from_env]
base_url = "{base_url}"
client_secret_env = "OTHER_SECRET_VAR"
cache_dir = "{cache_dir.as_posix()}"

[profiles.not_a_string]
base_url = "{base_url}"
client_secret = 918273645
cache_dir = "{cache_dir.as_posix()}"

[profiles.plain_http]
base_url = "http://contoso.example.com"
client_secret = "PROFILE-SECRET-4f1c"
""",
        encoding="utf-8",
    )


async def test_no_secret_in_any_response(
    demo: Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = ["ENV-SECRET-9b2e", "PROFILE-SECRET-4f1c", "VAR-SECRET-77aa", "918273645"]
    monkeypatch.setenv("D365FO_CLIENT_SECRET", secrets[0])
    monkeypatch.setenv("OTHER_SECRET_VAR", secrets[2])
    profiles = tmp_path / "profiles.toml"
    _write_profiles(profiles, demo.settings.base_url, tmp_path / "cache")
    monkeypatch.setenv("D365SYNC_PROFILES", str(profiles))
    answers: list[Answer] = []

    async def every_tool(profile: str | None, session_id: str) -> None:
        answers.extend(
            [
                await tools.d365fo_start_sync("full_without_labels", profile=profile),
                await tools.d365fo_get_sync_progress(session_id, profile=profile),
                await tools.d365fo_list_sync_sessions(profile=profile),
                await tools.d365fo_get_sync_history(limit=5, profile=profile),
                await tools.d365fo_cancel_sync(session_id, profile=profile),
            ]
        )

    # success paths: the profile holds a secret and reaches the same environment and cache
    started = await tools.d365fo_start_sync(profile="demo")
    assert started["success"], started
    assert registry.connection("demo").settings.base_url == demo.settings.base_url
    answers.append(started)
    answers.append(await run_to_end(started["session_id"], profile="demo"))
    for profile in ("demo", "from_env", None):
        await every_tool(profile, started["session_id"])
    # failure paths: secret in a broken profile, bad URL, unknown profile, 401 from the service
    for profile in ("not_a_string", "plain_http", "missing"):
        await every_tool(profile, started["session_id"])
    demo.emulator.configure(token="service-token")
    await every_tool("demo", "00000000-0000-4000-8000-000000000000")

    failures = [a for a in answers if not a["success"]]
    errors = " | ".join(a["error"] for a in failures)
    assert "401" in errors and "Unknown profile 'missing'" in errors
    assert "Plain http is only allowed for loopback" in errors
    text = json.dumps(answers)
    for secret in secrets:
        assert secret not in text


async def test_unexpected_errors_are_values_without_secrets(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("D365FO_CLIENT_SECRET", "ENV-SECRET-9b2e")

    @tools.as_tool
    async def broken_tool(profile: str | None = None) -> Answer:
        raise RuntimeError("boom near ENV-SECRET-9b2e")

    answer = await broken_tool()
    assert_failure(answer, "broken_tool", "Internal error (RuntimeError: boom near ***)")
    assert "ENV-SECRET-9b2e" not in json.dumps(answer)
    assert "broken_tool failed unexpectedly" in caplog.text


async def test_tool_metadata_is_shared() -> None:
    assert [spec.name for spec in tools.TOOLS] == SYNC_TOOLS
    for spec in tools.TOOLS:
        assert spec.fn is getattr(tools, spec.name)
        assert spec.fn.__name__ == spec.name and spec.title and len(spec.description) > 60
    start = tools.TOOLS[0]
    for strategy in SyncStrategy:
        assert f"'{strategy.value}'" in start.description
    assert [s.read_only for s in tools.TOOLS] == [False, True, True, False, True, True]
    progress, history = tools.TOOLS[2], tools.TOOLS[5]
    assert "session.http" in progress.description and "'diagnosis'" in progress.description
    for word in ("status", "strategy", "global_version_id", "since", "until"):
        assert word in history.description


async def test_wait_reports_increasing_progress_and_returns_the_outcome(demo: Connection) -> None:
    demo.emulator.configure(latency_ms=20)
    first: list[tuple[float, float | None, str | None]] = []
    seen: list[tuple[float, float | None, str | None]] = []

    async def into(target: list[Any]) -> Any:
        async def report(progress: float, total: float | None, message: str | None) -> None:
            target.append((progress, total, message))

        return report

    started = await tools.d365fo_start_sync("full", wait_seconds=0, report=await into(first))
    assert started["success"] and started["waited"]["still_running"] is True
    assert started["waited"]["finished"] is False
    assert started["waited"]["message"].startswith("Still running after 0 s: ")
    assert len(first) == 1 and first[0][1] == 100.0  # where it stood when the wait began
    sid = started["session_id"]

    waited = await tools.d365fo_wait_sync(sid, timeout_seconds=120, report=await into(seen))
    assert waited["success"] and waited["finished"] and waited["summary"]["status"] == "completed"
    assert waited["verdict"].startswith("healthy") and waited["http"]["requests"] > 900
    values = [p for p, _, _ in seen]
    assert len(values) >= 3 and values == sorted(set(values)) and values[-1] == 100.0
    assert any(m and m.startswith("labels ") and ", ETA " in m for *_, m in seen), seen
    assert seen[-1][2] == waited["message"]  # the last notification is the outcome

    again = await tools.d365fo_wait_sync(sid, timeout_seconds=1000)  # ended: answers at once
    assert again["finished"] and again["waited_seconds"] < 5
    assert again["notice"] == "timeout 1000 is outside 0..300; waited at most 300"
    bad = await tools.d365fo_wait_sync(sid, timeout_seconds="soon")  # type: ignore[arg-type]
    assert_failure(bad, "d365fo_wait_sync", "timeout_seconds must be a number of seconds")


async def test_a_wait_ends_with_a_cancel_and_leaving_it_leaves_the_sync_running(
    demo: Connection,
) -> None:
    sid = await start_and_reach_labels(demo)
    gone = asyncio.ensure_future(tools.d365fo_wait_sync(sid, timeout_seconds=120))
    await asyncio.sleep(0)  # the wait has begun
    gone.cancel()  # the client went away
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    assert demo.manager.get_sync_session(sid).is_running  # the sync goes on

    waiting = asyncio.ensure_future(tools.d365fo_wait_sync(sid, timeout_seconds=120))
    cancelled = await tools.d365fo_cancel_sync(sid)
    assert cancelled["success"], cancelled
    ended = await waiting
    assert ended["success"] and ended["finished"] and ended["summary"]["status"] == "cancelled"
    assert ended["message"].startswith("Cancelled in phase labels")


async def test_a_sync_held_outside_this_server_is_not_sent_to_list_or_cancel(
    demo: Connection,
) -> None:
    """A watch (or another process) holds the cache: the conflict says the tools cannot list or
    stop it, instead of pointing at d365fo_list_sync_sessions as for this server's own sync."""
    from d365sync_nb.store.lock import CacheLock

    watch = CacheLock(demo.manager.store.path)  # as a watch's check holds it
    assert watch.acquire()
    try:
        refused = await tools.d365fo_start_sync("full")
    finally:
        watch.release()
    assert_failure(refused, "d365fo_start_sync", "Another sync or a watch", "outside this server")
    assert "d365fo_cancel_sync cannot stop it" in refused["error"]
    assert "shows the running session" not in refused["error"]
    started = await tools.d365fo_start_sync("full_without_labels")  # the lock is free again
    assert started["success"], started
    await run_to_end(started["session_id"])
