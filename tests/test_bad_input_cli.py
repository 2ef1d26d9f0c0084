"""Bad input through the `d365sync` command, as a careless user or a hostile environment gives it.

Every case runs the real command in its own process with a canary secret in the environment
(and, where a URL is given, in the URL), and asserts: the exit status, exactly one line on stderr
(no traceback, no HTML), no secret anywhere in the output, nothing written where nothing should
be, and an end within its time bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

CANARY = "canary-s3cret-4711"
BUSY = "{busy_port}"


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    exit: int
    words: str  # a part of the one error line
    seconds: float = 20.0
    writes_nothing: bool = True  # the cache directory is not even created


# fmt: off
CASES = [
    # strategies, versions, URLs, profiles
    Case("unknown strategy", ("sync", "--demo", "--strategy", "fulll"), 2, "Unknown strategy"),
    Case("malformed URL", ("sync", "--base-url", "ftp://x"), 2, "Malformed base URL"),
    Case("password in a bad URL", ("sync", "--base-url", f"https://u:{CANARY}@x.com:99999"),
         2, "Malformed base URL 'https://u:***@"),
    Case("plain http", ("sync", "--base-url", "http://contoso.example"), 2, "Plain http"),
    Case("credentials in URL", ("sync", "--base-url", f"https://u:{CANARY}@contoso.example"),
         2, "must not contain credentials"),
    Case("unknown profile", ("sync", "--profile", "nope"), 2, "Unknown profile 'nope'"),
    Case("no environment", ("history",), 2, "No environment configured"),
    # numbers out of range
    Case("zero concurrency", ("sync", "--demo", "--concurrency", "0"), 2, "between 1 and 256"),
    Case("huge concurrency", ("sync", "--demo", "--concurrency", "1000000000"), 2, "256"),
    Case("huge version", ("sync", "--demo", "--version", "1" * 30), 2,
         "Global version id must be between 1 and", writes_nothing=False),
    Case("word version", ("sync", "--demo", "--version", "abc"), 2, "expected a whole number",
         writes_nothing=False),
    Case("huge limit", ("history", "--demo", "--limit", "1" + "0" * 20), 2, "between 1 and 1000"),
    Case("negative limit", ("search", "x", "--demo", "--limit", "-1"), 2, "between 1 and 1000"),
    Case("history status", ("history", "--demo", "--status", "done"), 2,
         "Unknown status 'done'", writes_nothing=False),
    Case("history date", ("history", "--demo", "--since", "yesterday"), 2, "since must be",
         writes_nothing=False),
    Case("unknown session", ("diagnose", "00000000-0000-4000-8000-000000000000", "--demo"), 1,
         "No sync session", writes_nothing=False),
    Case("bad session id", ("requests", "nope!", "--demo"), 1, "No sync session",
         writes_nothing=False),
    Case("requests filter", ("requests", "--demo", "--status", "7xx"), 1, "No sync session",
         writes_nothing=False),
    # emulator and demo options
    Case("nan fault rate", ("emulator", "--fault-rate", "nan"), 2, "finite number"),
    Case("fault rate above 1", ("emulator", "--fault-rate", "2"), 2, "from 0 to 1"),
    Case("negative latency", ("emulator", "--latency-ms", "-1"), 2, "finite number >= 0"),
    Case("impossible port", ("emulator", "--port", "70000"), 2, "between 0 and 65535"),
    Case("busy port", ("emulator", "--port", BUSY), 1, "Address already in use"),
    Case("zero page size", ("emulator", "--page-size", "0"), 2, "between 1 and 100000"),
    Case("zero max concurrency", ("emulator", "--max-concurrency", "0"), 2, "between 1 and"),
    Case("unknown dataset", ("emulator", "--dataset-version", "3"), 2, "invalid choice"),
    Case("demo nan latency", ("demo", "--latency-ms", "nan"), 2, "finite number"),
    Case("sync --demo inf latency", ("sync", "--demo", "--latency-ms", "inf"), 2, "finite"),
    Case("mcp unknown profile", ("mcp", "--profile", "nope"), 2, "Unknown profile 'nope'"),
]
# fmt: on


@pytest.fixture
def run(tmp_path: Path):
    """Run ``d365sync ARGS --cache-dir <fresh dir>`` with a canary secret around."""
    profiles = tmp_path / "profiles.toml"

    def go(args: tuple[str, ...], *, cache: bool = True, seconds: float = 20.0):
        cache_dir = tmp_path / "cache"
        extra = ("--cache-dir", str(cache_dir)) if cache else ()
        env = {
            **os.environ,
            "D365FO_CLIENT_SECRET": CANARY,
            "D365FO_CLIENT_ID": "app",
            "D365FO_TENANT_ID": "tenant",
            "D365SYNC_PROFILES": str(profiles),
            "D365SYNC_CACHE_DIR": str(tmp_path / "default-cache"),
        }
        env.pop("D365FO_BASE_URL", None)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "d365sync_nb", *args, *extra],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        elapsed = time.monotonic() - started
        return done, elapsed, cache_dir

    go.profiles = profiles  # type: ignore[attr-defined]
    return go


def assert_one_clean_line(done: subprocess.CompletedProcess[str], words: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("d365sync"), line
    assert words in line, line
    for text in (done.stderr, done.stdout):
        assert "Traceback" not in text and CANARY not in text
        assert "<html" not in text.lower() and "<!doctype" not in text.lower()
    return line


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line(case: Case, run, emulator) -> None:
    args = tuple(
        a.replace(BUSY, emulator.base_url.rsplit(":", 1)[1]) for a in case.args
    )  # a port the emulator holds
    takes_cache = args[0] not in ("emulator",)
    done, elapsed, cache_dir = run(args, cache=takes_cache, seconds=case.seconds)
    assert done.returncode == case.exit, (done.returncode, done.stderr)
    assert_one_clean_line(done, case.words)
    assert done.stdout == ""
    assert elapsed < case.seconds
    if case.writes_nothing:
        assert not cache_dir.exists() or not any(cache_dir.iterdir())


def test_a_stalled_service_fails_within_its_bound(run, stalled_server) -> None:
    run.profiles.write_text(f'[profiles.slow]\nbase_url = "{stalled_server}"\nread_timeout = 0.5\n')
    done, elapsed, _ = run(("sync", "--profile", "slow"), seconds=30)
    assert done.returncode == 1
    assert_one_clean_line(done, "the service stopped answering: no data for 0.5 s, 3 times")
    assert elapsed < 30


def test_a_web_server_that_is_not_d365(run, html_server) -> None:
    done, _, _ = run(("sync", "--base-url", html_server))
    assert done.returncode == 1
    assert_one_clean_line(done, "this does not look like the D365 metadata service")


def test_a_service_that_wants_a_token(run, emulator) -> None:
    emulator.configure(token="needed")
    done, _, _ = run(("sync", "--base-url", emulator.base_url))
    assert done.returncode == 1
    assert_one_clean_line(done, "401")


@pytest.mark.parametrize("where", ["a file", "/dev/null", "empty"])
def test_unusable_cache_directories(run, tmp_path, emulator, where) -> None:
    target = {"a file": str(tmp_path / "plain"), "/dev/null": "/dev/null", "empty": ""}[where]
    if where == "a file":
        Path(target).write_text("x")
    args = ("history", "--base-url", emulator.base_url, "--cache-dir", target)
    done, _, _ = run(args, cache=False)
    assert done.returncode == (2 if where == "empty" else 1)
    assert_one_clean_line(done, "empty" if where == "empty" else target)
    assert not list(Path.cwd().glob("*.sqlite3"))  # never the current directory


def test_a_damaged_cache_is_named_by_reads_and_healed_by_sync(run, tmp_path, emulator) -> None:
    where = ("--base-url", emulator.base_url)
    done, _, cache_dir = run(("sync", *where, "--strategy", "entities_only"))
    assert done.returncode == 0, done.stderr
    [path] = cache_dir.glob("*.sqlite3")
    path.write_bytes(b"garbage!" * 4096)
    for extra in cache_dir.glob("*.sqlite3-*"):
        extra.unlink()
    done, _, _ = run(("history", *where))
    assert done.returncode == 1
    assert_one_clean_line(done, f"The cache file {path} is damaged")
    done, _, _ = run(("sync", *where, "--strategy", "entities_only"))
    assert done.returncode == 0, done.stderr
    assert f"d365sync: The cache file {path} was damaged: it was moved to " in done.stderr
    assert len(list(cache_dir.glob("*.damaged-*"))) == 1
