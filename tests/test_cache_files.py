"""The cache file is not trusted: bad paths, read-only files, a full disk, a damaged file and a
race to create a new cache each end in one line naming the path, and a sync heals damage."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from d365sync_nb.config import resolve_settings
from d365sync_nb.errors import CacheDamagedError, CacheError, ConfigurationError
from d365sync_nb.models import SyncStatus
from d365sync_nb.store import MetadataStore
from tests.support import expected, visible_counts

NOBODY = 65534


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def test_a_cache_directory_that_is_a_file_or_a_device(tmp_path: Path) -> None:
    plain = tmp_path / "plain-file"
    plain.write_text("not a directory")
    for directory, words in ((plain, "is a file"), (Path("/dev/null"), "/dev/null")):
        with pytest.raises(CacheError) as info:
            MetadataStore(directory / "env.sqlite3")
        assert words in one_line(info.value) and str(directory) in str(info.value)
    assert plain.read_text() == "not a directory"  # nothing written where it should not be


def test_an_empty_cache_directory_is_refused_not_the_current_one() -> None:
    with pytest.raises(ConfigurationError, match="cache directory is empty"):
        resolve_settings(base_url="http://127.0.0.1:1", cache_dir="  ")


@contextlib.contextmanager
def as_nobody() -> Iterator[None]:
    """Check files as a plain user would (root bypasses permissions): drop the effective ids."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_read_only_directory_and_file_as_a_plain_user() -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="d365sync-ro-"))  # pytest's own is root-only
    tmp_path.chmod(0o755)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    cache = tmp_path / "open"
    cache.mkdir()
    cache.chmod(0o777)  # writable by anyone: only the file is read-only
    store = MetadataStore(cache / "env.sqlite3")  # a real cache, owned by root
    store.close()
    (cache / "env.sqlite3").chmod(0o444)
    errors = []
    with as_nobody():
        for path in (locked / "env.sqlite3", cache / "env.sqlite3"):
            with pytest.raises(CacheError) as info:
                MetadataStore(path)
            errors.append(one_line(info.value))
    assert errors[0] == (
        f"The cache directory {locked} is read-only; choose another with --cache-dir "
        "(or D365SYNC_CACHE_DIR)"
    )
    assert errors[1].startswith(f"The cache file {cache / 'env.sqlite3'} is read-only")
    assert list(locked.iterdir()) == []
    shutil.rmtree(tmp_path)


async def test_a_full_disk_is_one_line_and_the_session_fails_cleanly(emulator, make_manager):
    mount = Path(f"/tmp/d365sync-full-{os.getpid()}")
    mount.mkdir(exist_ok=True)
    small = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True
    )
    if small.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here: {small.stderr.decode().strip()}")
    try:
        try:
            manager = make_manager(emulator.base_url, cache_dir=mount)
        except CacheError as exc:  # the schema alone did not fit
            assert "free some space" in one_line(exc)
            return
        result = await manager.start(strategy="full")
        session = await manager.wait(result.session_id)
        assert session.status == SyncStatus.FAILED
        assert str(manager.store.path) in session.error and "free some space" in session.error
        assert "\n" not in session.error
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


@pytest.mark.parametrize("damage", ["garbage over the start", "truncated", "a missing column"])
async def test_a_damaged_cache_is_named_then_healed_by_a_sync(
    emulator, make_manager, tmp_path, damage
):
    cache = tmp_path / "cache"
    first = make_manager(emulator.base_url, cache_dir=cache)
    await first.wait((await first.start(strategy="full_without_labels")).session_id)
    path = first.store.path
    first.store.close()
    first.closed = True
    data = path.read_bytes()
    assert len(data) > 8192
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif damage == "a missing column":  # a file of another build claiming this schema version
        conn = sqlite3.connect(path)
        conn.execute("ALTER TABLE sessions DROP COLUMN request_log_pruned")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(b"\xde\xad" * 512 + data[1024:])
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    damaged = path.read_bytes()

    with pytest.raises(CacheDamagedError) as info:  # a read-only command: how to recover
        make_manager(emulator.base_url, cache_dir=cache)
    text = one_line(info.value)
    assert str(path) in text and "damaged" in text and "d365sync sync" in text
    if damage == "a missing column":
        assert "sessions.request_log_pruned" in text
    assert path.read_bytes() == damaged  # left as it was, nothing beside it
    beside = sorted(p.name for p in cache.iterdir() if p.name != f"{path.name}.sync.lock")
    assert beside == [path.name]  # the first sync's (empty) lock file stays, as locks do

    healed = make_manager(emulator.base_url, cache_dir=cache, repair_cache=True)
    notice = healed.cache_notice
    assert notice is not None and str(path) in notice
    kept = next(p for p in cache.glob("*.damaged-*") if p.name[-1].isdigit())
    assert kept.read_bytes() == damaged and str(kept) in notice
    session = await healed.wait((await healed.start(strategy="full")).session_id)
    assert session.status == SyncStatus.COMPLETED, session.error
    assert visible_counts(healed, session.global_version_id) == expected(emulator)


def test_processes_racing_to_create_a_new_cache_all_open_it(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from d365sync_nb.store import MetadataStore\n"
        "start = float(sys.argv[2])\n"
        "while time.time() < start: pass\n"
        "store = MetadataStore(sys.argv[1]); print(store.history.count()); store.close()\n"
    )
    import time

    for attempt in range(4):
        path = tmp_path / f"race-{attempt}" / "env.sqlite3"
        start = str(time.time() + 1.0)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(path), start],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outs = [p.communicate(timeout=60) for p in procs]
        assert [o for o, _ in outs] == ["0\n"] * 4, [e for _, e in outs]
    shutil.rmtree(tmp_path, ignore_errors=True)
