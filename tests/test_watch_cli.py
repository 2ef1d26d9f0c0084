"""``d365sync watch`` in real subprocesses: exit codes, --json events, SIGTERM mid-sync, two
watchers on one cache, an emulator that upgrades itself while watched; ``history --checks``,
``diagnose --history`` and the ``d365fo_check_version`` tool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from d365sync_nb import automation_tools
from d365sync_nb.connection import connect, default_connection
from tests.test_cli import d365sync
from tests.webhooks import SIGNATURE, Receiver

EVENT_KEYS = {"event", "time", "environment", "global_version_id", "action", "session_id"}


def watch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "d365sync_nb", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], want: str, seen: list[dict]) -> dict:
    """Read --json event lines until one whose ``event`` (or ``action``) is ``want``."""
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event)
        if want in (event["event"], event.get("action")):
            return event
    raise AssertionError(f"the watch ended before {want!r}: {seen} {proc.stderr.read()}")


def test_once_exit_codes_json_events_and_the_checks_history(emulator, tmp_path):
    where = ("--base-url", emulator.base_url, "--cache-dir", str(tmp_path))
    first = d365sync("watch", *where, "--once", "--json")
    assert first.returncode == 0, first.stderr
    events = [json.loads(line) for line in first.stdout.splitlines()]
    assert [e["event"] for e in events] == ["sync_started", "sync_finished", "check"]
    assert all(set(e) >= EVENT_KEYS for e in events)
    assert events[-1]["action"] == "synced" and events[-1]["global_version_id"] == 1
    again = d365sync("watch", *where, "--once")
    assert again.returncode == 0 and "up to date" in again.stdout
    emulator.configure(corrupt="non_json")
    emulator.next_release()
    failed = d365sync("watch", *where, "--once", "--json")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert json.loads(failed.stdout.splitlines()[-1])["action"] == "failed"
    checks = json.loads(d365sync("checks", *where, "--json").stdout)
    assert [c["action"] for c in checks] == ["failed", "up_to_date", "synced"]
    assert [c["global_version_id"] for c in checks] == [2, 1, 1]
    table = d365sync("checks", *where).stdout
    assert "up_to_date" in table and "failed" in table


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--every", "5x"], "Bad duration"),
        (["--cron", "0 25 * * *"], "Bad cron expression"),
        ([], "Give --every DURATION, --cron EXPR"),
        (["--once", "--notify", "teams"], "Bad notification target"),
        (["--once", "--notify", "jupyter"], "in a notebook"),
        (["--once", "--strategy", "everything"], "Unknown strategy"),
    ],
)
def test_bad_watch_input_is_one_line_exit_2(tmp_path, args, words):
    done = d365sync(
        "watch", "--base-url", "http://127.0.0.1:9", "--cache-dir", str(tmp_path), *args
    )
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_sigterm_mid_sync_cancels_the_session_and_exits_cleanly(emulator, tmp_path):
    emulator.configure(latency_ms=30)  # the labels phase takes a while
    proc = watch("--base-url", emulator.base_url, "--cache-dir", str(tmp_path), "--every", "1h",
                 "--json", "--strategy", "full")  # fmt: skip
    seen: list[dict] = []
    started = read_until(proc, "sync_started", seen)
    deadline = time.monotonic() + 60
    while emulator.stats()["requests_by_endpoint"].get("Labels", 0) < 10:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopping (cancelling session" in err
    events = seen + [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["sync_started", "sync_finished", "check"]
    assert events[1]["status"] == "cancelled" and events[2]["action"] == "cancelled"
    with connect(base_url=emulator.base_url, cache_dir=tmp_path) as conn:
        session = conn.manager.get_sync_session(started["session_id"])
        assert session.status.value == "cancelled"
        assert conn.manager.store.checks.latest().action.value == "cancelled"
        assert conn.manager.store.versions.get_version(1)["current_build_id"] is None


def test_sigterm_during_once_exits_130(emulator, tmp_path):
    emulator.configure(latency_ms=30)
    proc = watch("--base-url", emulator.base_url, "--cache-dir", str(tmp_path), "--once", "--json")
    read_until(proc, "sync_started", [])
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads(out.splitlines()[-1])["action"] == "cancelled"


def test_two_watcher_processes_on_one_cache_sync_once(emulator, tmp_path):
    emulator.configure(latency_ms=20)
    where = ("--base-url", emulator.base_url, "--cache-dir", str(tmp_path), "--once", "--json")
    procs = [watch(*where), watch(*where)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    actions = sorted(json.loads(out.splitlines()[-1])["action"] for out, _ in results)
    assert actions in (["skipped_running", "synced"], ["synced", "up_to_date"])
    with connect(base_url=emulator.base_url, cache_dir=tmp_path) as conn:
        assert len(conn.manager.get_session_history()) == 1


HOLD_LOCK = """
import sys
from d365sync_nb.store.lock import CacheLock
lock = CacheLock(sys.argv[1])
print("held" if lock.acquire() else "taken", flush=True)
sys.stdin.read()
"""


def test_a_manual_sync_and_a_watch_in_other_processes_never_sync_at_once(emulator, tmp_path):
    """The cache's lock, across processes: a manual ``d365sync sync`` is refused (one line, no
    session) while another process holds it, and a watch skips while a manual sync runs."""
    where = ("--base-url", emulator.base_url, "--cache-dir", str(tmp_path))
    with connect(base_url=emulator.base_url, cache_dir=tmp_path) as conn:
        cache = conn.manager.store.path
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(cache)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = d365sync("sync", *where)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert "Another sync or a watch is checking or syncing this cache" in refused.stderr
        assert emulator.stats()["requests_by_endpoint"].get("Labels", 0) == 0
    finally:
        holder.communicate(input="", timeout=30)
    with connect(base_url=emulator.base_url, cache_dir=tmp_path) as conn:
        assert conn.manager.get_session_history() == []

    emulator.configure(latency_ms=30)
    manual = subprocess.Popen(
        [sys.executable, "-m", "d365sync_nb", "sync", *where, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while emulator.stats()["requests_by_endpoint"].get("Labels", 0) < 10:
            assert time.monotonic() < deadline and manual.poll() is None
            time.sleep(0.02)
        os.kill(manual.pid, signal.SIGSTOP)  # mid-sync for as long as the watch takes
        try:
            checked = d365sync("watch", *where, "--once", "--json")
        finally:
            os.kill(manual.pid, signal.SIGCONT)
        assert checked.returncode == 0, checked.stderr
        event = json.loads(checked.stdout.splitlines()[-1])
        assert event["action"] == "skipped_running" and event["session_id"] is None
        assert "a sync is checking or syncing" in event["reason"]
    finally:
        manual.send_signal(signal.SIGINT)
        out, err = manual.communicate(timeout=60)
    assert manual.returncode == 130, err
    assert json.loads(out.splitlines()[-1])["status"] == "cancelled"
    again = d365sync("sync", *where, "--json")  # the lock went with the session
    assert again.returncode == 0, again.stderr


def test_a_watch_finds_the_emulators_next_release(tmp_path):
    """End to end: the emulator process is upgraded (its admin endpoint) while ``d365sync
    watch --every 1s`` watches it; the watch syncs the new version and notifies a webhook."""
    emu = subprocess.Popen(
        [sys.executable, "-m", "d365sync_nb", "emulator"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert emu.stdout is not None
        base_url = emu.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        with Receiver() as hooks:
            proc = watch("--base-url", base_url, "--cache-dir", str(tmp_path), "--every", "1s",
                         "--json", "--notify", f"webhook:{hooks.url('hook')}")  # fmt: skip
            seen: list[dict] = []
            try:
                read_until(proc, "synced", seen)  # version 1
                read_until(proc, "up_to_date", seen)
                assert httpx.post(f"{base_url}/_emulator/release").json()["version"] == 2
                second = read_until(proc, "synced", seen)
            finally:
                proc.send_signal(signal.SIGTERM)
                out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            bodies = hooks.bodies("hook")
        assert second["global_version_id"] == 2 and second["previous_version_id"] == 1
        checks = [e for e in seen if e["event"] == "check"]
        assert [e["action"] for e in checks].count("synced") == 2
        assert {e["action"] for e in checks} <= {"synced", "up_to_date"}
        assert [b["event"] for b in bodies] == ["sync_completed", "version_changed"]
        assert bodies[1]["changes"]["summary"].startswith("+")
        assert SIGNATURE not in out + err + json.dumps(seen)
    finally:
        emu.send_signal(signal.SIGINT)
        emu.communicate(timeout=30)


def test_diagnose_history_is_honest_about_too_few_sessions(emulator, tmp_path):
    where = ("--base-url", emulator.base_url, "--cache-dir", str(tmp_path))
    assert d365sync("sync", *where).returncode == 0
    done = d365sync("diagnose", *where, "--history")
    assert done.returncode == 0 and done.stdout.startswith("Too few sessions to tell")
    answer = json.loads(d365sync("diagnose", *where, "--history", "--json").stdout)
    assert answer["enough"] is False and answer["sessions"] == 1 and answer["best"] is None


# -- the assistant tool ------------------------------------------------------------------------
async def test_check_version_tool(emulator, tmp_path: Path):
    with connect(base_url=emulator.base_url, cache_dir=tmp_path) as conn, default_connection(conn):
        emulator.reset_stats()
        before = await automation_tools.d365fo_check_version()
        assert before["success"] and before["due"] and before["cached_version_id"] is None
        assert "d365fo_start_sync" in before["message"]
        assert emulator.stats()["total_requests"] == 3
        await conn.manager.wait((await conn.manager.start(strategy="incremental")).session_id)
        after = await automation_tools.d365fo_check_version()
        assert after["success"] and not after["due"] and after["cached_version_id"] == 1
        assert after["message"].startswith("Nothing to do")
        bad = await automation_tools.d365fo_check_version(strategy="everything")
        assert bad["success"] is False and "Unknown strategy" in bad["error"]


def test_check_version_command(emulator, tmp_path):
    where = ("--base-url", emulator.base_url, "--cache-dir", str(tmp_path))
    before = d365sync("check-version", *where)
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith("Environment: version 1 (10.0.41.2095); cache: nothing")
    assert "a sync is due: the cache has no complete version yet" in before.stdout
    assert d365sync("watch", *where, "--once").returncode == 0
    emulator.next_release()
    after = json.loads(d365sync("check-version", *where, "--json").stdout)
    assert after["due"] and after["version_changed"] and after["global_version_id"] == 2
    assert after["cached_version_id"] == 1 and after["strategy"] == "incremental"
    bad = d365sync("check-version", *where, "--strategy", "everything")
    assert bad.returncode == 2 and "Unknown strategy" in bad.stderr


def test_a_fleet_of_profiles_each_on_its_own_schedule(tmp_path):
    from d365sync_nb.emulator import Emulator

    with Emulator() as a_url, Emulator() as b_url, Receiver() as hooks:
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(
            f'[profiles.a]\nbase_url = "{a_url}"\nschedule = "1s"\n'
            f'notify = ["webhook:{hooks.url("a")}"]\n'
            f'[profiles.b]\nbase_url = "{b_url}"\nschedule = "0 3 * * *"\n'
        )
        env = {**os.environ, "D365SYNC_PROFILES": str(profiles)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "d365sync_nb", "watch", "--profile", "a", "--profile", "b",
             "--cache-dir", str(tmp_path / "cache"), "--json", "--max-parallel", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        seen: list[dict] = []
        try:
            read_until(proc, "synced", seen)  # a checks at once (every 1s)
            read_until(proc, "up_to_date", seen)  # and again a second later
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        events = seen + [json.loads(line) for line in out.splitlines()]
        checked = {e["environment"] for e in events if e["event"] == "check"}
        assert checked == {a_url}  # b waits for 03:00 UTC (its cron schedule)
        assert [b["event"] for b in hooks.bodies("a")] == ["sync_completed"]
