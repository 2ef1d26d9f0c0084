"""The d365sync command in real subprocesses against the emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from d365sync_nb.models import PHASES
from d365sync_nb.render import SUMMARY_COUNTS


def d365sync(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "d365sync_nb", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sync_json_then_history_and_search(emulator, tmp_path):
    cache = str(tmp_path / "cache")
    done = d365sync("sync", "--base-url", emulator.base_url, "--cache-dir", cache, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    want = emulator.dataset.expected_counts()
    assert result["status"] == "completed" and result["error"] is None
    assert result["strategy"] == "full" and result["global_version_id"] == 1
    assert result["counts"] == {key: want[key] for key, _ in SUMMARY_COUNTS}
    assert list(result["phases"]) == [p.value for p in PHASES]
    assert result["phases"]["labels"]["items_processed"] == want["label_ids"]
    assert result["duration_seconds"] > 0

    again = d365sync("sync", "--base-url", emulator.base_url, "--cache-dir", cache, "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "up_to_date"

    history = d365sync("history", "--base-url", emulator.base_url, "--cache-dir", cache, "--json")
    rows = json.loads(history.stdout)
    assert [r["session_id"] for r in rows] == [result["session_id"]]

    name = emulator.dataset.public_entities[0]["Name"]
    found = d365sync(
        "search", name, "--base-url", emulator.base_url, "--cache-dir", cache, "--json"
    )
    assert any(hit["name"] == name for hit in json.loads(found.stdout))


@pytest.mark.parametrize(
    ("args", "words", "code"),
    [
        (["sync", "--base-url", "not a url"], "Malformed base URL", 2),
        (["sync", "--demo", "--strategy", "everything"], "Unknown strategy", 2),
        (["sync", "--base-url", "http://127.0.0.1:9"], "no answer after", 1),
    ],
)
def test_errors_are_one_line_with_exit_codes(tmp_path, args, words, code):
    done = d365sync(*args, "--cache-dir", str(tmp_path))
    assert done.returncode == code
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if "error" in line]) == 1


def test_ctrl_c_cancels_cleanly_with_exit_130(emulator, tmp_path):
    emulator.configure(latency_ms=30)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "d365sync_nb",
            "sync",
            "--base-url",
            emulator.base_url,
            "--cache-dir",
            str(tmp_path),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while emulator.stats()["requests_by_endpoint"].get("Labels", 0) < 20:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "cancelled"
    assert result["phases"]["labels"]["status"] == "cancelled"
    assert "Traceback" not in err


def test_demo_runs_end_to_end(tmp_path):
    done = d365sync("demo", "--latency-ms", "0", "--cache-dir", str(tmp_path), timeout=180)
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stderr
    assert "data_entities" in done.stdout and "public_entities" in done.stdout
