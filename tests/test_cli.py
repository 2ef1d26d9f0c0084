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
from d365sync_nb.views.session import SUMMARY_COUNTS


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


# -- requests, diagnose, compare, history filters --------------------------------------------
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    """One emulator and a cache with two sessions: A 'full', then B 'full_without_labels'."""
    from d365sync_nb.emulator import Emulator

    emu = Emulator(scale="small")
    emu.start()
    cache = str(tmp_path_factory.mktemp("synced") / "cache")
    where = ("--base-url", emu.base_url, "--cache-dir", cache)
    try:
        results = []
        for strategy in ("full", "full_without_labels"):
            done = d365sync("sync", *where, "--strategy", strategy, "--force", "--json")
            assert done.returncode == 0, done.stderr
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        yield where, results[0], results[1]
    finally:
        emu.stop()


def ok(*args: str) -> str:
    done = d365sync(*args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_requests_json_csv_and_table(synced):
    where, a, b = synced
    rows = json.loads(ok("requests", a["session_id"], *where, "--json"))
    assert len(rows) == a["http"]["requests"] > 800
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["started_at"].endswith("Z") and r["request_id"] for r in rows)

    import csv
    import io

    from d365sync_nb.operations.views import REQUEST_COLUMNS

    prefix = a["session_id"][:8]
    parsed = list(csv.DictReader(io.StringIO(ok("requests", prefix, *where, "--csv"))))
    assert len(parsed) == len(rows)
    assert tuple(parsed[0]) == REQUEST_COLUMNS == tuple(rows[0])
    assert [p["activity_id"] for p in parsed] == [r["activity_id"] for r in rows]
    assert [int(p["bytes"]) for p in parsed] == [r["bytes"] for r in rows]

    labels = json.loads(ok("requests", prefix, *where, "--phase", "labels", "--json"))
    assert len(labels) == a["http"]["by_phase"]["labels"]["requests"]
    assert {r["endpoint"] for r in labels} == {"Labels"}
    ok_answers = json.loads(ok("requests", prefix, *where, "--status", "2xx", "--json"))
    assert len(ok_answers) == sum(
        n for code, n in a["http"]["by_status"].items() if code.startswith("2")
    )
    assert json.loads(ok("requests", prefix, *where, "--status", "429", "--json")) == []

    # no ID: the latest session (B); the text table has a line per attempt under its header
    latest = json.loads(ok("requests", *where, "--json"))
    assert len(latest) == b["http"]["requests"] < len(rows)
    table = ok("requests", *where).splitlines()
    assert table[0].split()[:4] == ["seq", "time", "phase", "endpoint"]
    assert len(table) == 2 + len(latest)
    assert latest[-1]["activity_id"] in table[-1]
    header = d365sync("requests", *where, "--phase", "labels")
    assert header.stdout.strip() == "(none)"
    assert f"Session {b['session_id']}: 0 of {len(latest)} attempts" in header.stderr


def test_diagnose_text_and_json(synced):
    where, a, b = synced
    found = json.loads(ok("diagnose", a["session_id"][:6], *where, "--json"))
    assert set(found) == {
        "session_id", "status", "verdict", "findings", "facts", "failed_requests",
        "retried_requests",
    }  # fmt: skip
    assert found["session_id"] == a["session_id"] and found["status"] == "completed"
    assert found["verdict"].startswith("healthy: no throttling, no dropped connections")
    assert "labels took" in found["verdict"]
    assert found["facts"]["requests"] == a["http"]["requests"]
    assert found["facts"]["request_log_kept"] is True
    assert found["findings"] == [] and found["failed_requests"] == []
    assert found["retried_requests"] == []

    text = ok("diagnose", *where)  # the latest: B
    assert text.startswith(f"Session {b['session_id']} (completed): healthy")
    assert len(text.strip().splitlines()) == 1


def test_compare_two_sessions(synced):
    where, a, b = synced
    both = json.loads(ok("compare", a["session_id"], b["session_id"][:8], *where, "--json"))
    assert (both["a"], both["b"]) == (a["session_id"], b["session_id"])
    assert [r["phase"] for r in both["phases"]] == [p.value for p in PHASES]
    labels = next(r for r in both["phases"] if r["phase"] == "labels")
    assert (labels["a_status"], labels["b_status"]) == ("completed", "skipped")
    assert labels["a_requests"] == a["http"]["by_phase"]["labels"]["requests"] > 0
    assert labels["b_requests"] == 0 and labels["requests_ratio"] == 0.0

    text = ok("compare", a["session_id"], b["session_id"], *where).splitlines()
    assert text[0].startswith(f"A: {a['session_id']}  full  completed")
    assert text[1].startswith(f"B: {b['session_id']}  full_without_labels  completed")
    by_phase = {line.split()[0]: line for line in text[5:]}
    assert list(by_phase) == [p.value for p in PHASES] + ["total"]
    assert "completed → skipped" in by_phase["labels"]
    requests = f"{a['http']['requests']} → {b['http']['requests']}"
    assert requests in by_phase["total"]


def test_history_filters_select_sessions(synced):
    from datetime import UTC, datetime, timedelta

    where, a, b = synced

    def ids(*filters: str) -> list[str]:
        return [s["session_id"] for s in json.loads(ok("history", *where, *filters, "--json"))]

    both = [b["session_id"], a["session_id"]]
    assert ids() == both
    assert ids("--strategy", "full") == [a["session_id"]]
    assert ids("--strategy", "full-without-labels") == [b["session_id"]]
    assert ids("--status", "completed") == both
    assert ids("--status", "failed") == []
    assert ids("--version", "1") == both and ids("--version", "2") == []
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert ids("--since", tomorrow) == []
    assert ids("--until", tomorrow) == both
    [started_b] = [
        s["started_at"] for s in json.loads(ok("history", *where, "--json", "--limit", "1"))
    ]
    assert ids("--since", started_b) == [b["session_id"]]  # inclusive
    assert ids("--until", started_b) == [a["session_id"]]  # exclusive
    assert ids("--limit", "1", "--status", "completed") == [b["session_id"]]
    table = ok("history", *where, "--strategy", "full").splitlines()
    assert len(table) == 3 and a["session_id"] in table[2]
    assert "requests" in table[0].split()


@pytest.mark.parametrize(
    ("args", "words", "code"),
    [
        (["history", "--status", "bogus"], "Unknown status 'bogus'; one of: running,", 2),
        (["history", "--strategy", "fastest"], "Unknown strategy 'fastest'; choose one of", 2),
        (["history", "--since", "yesterday"], "since must be a date or time", 2),
        (["history", "--until", "2026-13-01"], "until must be a date or time", 2),
        (["history", "--version", "x"], "--version: expected a whole number", 2),
        (["history", "--limit", "0"], "--limit: must be between 1 and 1000, not 0", 2),
        (["requests", "--status", "bogus"], "Unknown status filter 'bogus'", 2),
        (["requests", "--phase", "nope", "--json"], "Unknown phase 'nope'", 2),
        (["requests", "--json", "--csv"], "--csv: not allowed with argument --json", 2),
        (["compare", UNKNOWN_ID], "the following arguments are required: B", 2),
        (["requests", UNKNOWN_ID, "--json"], f"No sync session with id '{UNKNOWN_ID}'", 1),
        (["diagnose", "abc", "--json"], "No sync session with id 'abc'", 1),
        (["compare", UNKNOWN_ID, UNKNOWN_ID], f"No sync session with id '{UNKNOWN_ID}'", 1),
    ],
)
def test_bad_input_is_one_line(synced, args, words, code):
    where, _, _ = synced
    done = d365sync(*args, *where)
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("d365sync"), done.stderr
    assert words in done.stderr and ": error: " in done.stderr
    assert done.stdout == ""  # no JSON answer, not even a failure object


def test_no_session_yet_is_one_line(emulator, tmp_path):
    for command in ("requests", "diagnose"):
        done = d365sync(command, "--base-url", emulator.base_url, "--cache-dir", str(tmp_path))
        assert done.returncode == 1
        assert done.stderr == "d365sync: error: No sync session recorded yet: start one first\n"


def test_diagnose_a_throttled_sync(emulator, tmp_path):
    import csv
    import io

    emulator.configure(max_concurrency=3, retry_after=0.05, latency_ms=5)
    where = ("--base-url", emulator.base_url, "--cache-dir", str(tmp_path))
    # exactly 16 in flight (the adaptive default finds the service's 3 after a few 429s)
    done = d365sync("sync", *where, "--concurrency", "16", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    throttled = result["http"]["by_status"]["429"]
    assert throttled == emulator.stats()["responses_by_status"]["429"] > 5

    found = json.loads(ok("diagnose", *where, "--json"))
    assert f"throttled: {throttled} x 429 (Retry-After honoured, " in found["verdict"]
    assert any("throttled this client" in f for f in found["findings"])
    assert found["failed_requests"] == []  # every 429 was retried: nothing failed for good
    retried = found["retried_requests"]
    assert retried and all(r["status"] == 429 for r in retried)
    text = ok("diagnose", result["session_id"], *where)
    assert text.startswith(f"Session {result['session_id']} (completed): throttled: ")
    assert "Retried requests (the last few):" in text and "Failed requests" not in text
    assert retried[-1]["activity_id"] in text

    rows = list(csv.DictReader(io.StringIO(ok("requests", *where, "--status", "429", "--csv"))))
    assert len(rows) == throttled
    assert {r["status"] for r in rows} == {"429"} and {r["retry_cause"] for r in rows} == {"429"}


def test_an_interrupt_while_the_command_starts_is_one_line() -> None:
    """Ctrl-C while the command's modules are still being imported: one line, exit 130.
    The interrupt is raised by an import hook when ``d365sync_nb.cli`` is imported, so the
    test does not depend on when a signal would land."""
    script = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'd365sync_nb.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from d365sync_nb.entry import main\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130
    assert done.stderr.strip() == "d365sync: interrupted"
    assert done.stdout == ""


def test_text_tables_never_pass_terminal_escapes_through() -> None:
    """Service data shown in a text table (an entity name, a label text) cannot drive the
    terminal or split the row: escapes are removed, line breaks become spaces."""
    from d365sync_nb.render import table

    text = table([{"name": "Evil\x1b]0;owned\x07Entity\nnext line", "n": 1}])
    assert "\x1b" not in text and "\x07" not in text
    assert text.splitlines()[2].startswith("EvilEntity next line")
