"""Which long-running watch keeps an environment current: ``<cache file>.watch.json``.

A watch writes it when it starts and removes it when it stops. A process that dies (a kernel
restart, a killed terminal) leaves it behind; the next connect reads it with :func:`ended_watch`
and says the watch ended, instead of letting anyone believe the cache is still watched.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from d365sync_nb.models import iso, utcnow
from d365sync_nb.store.liveness import HOST, alive_elsewhere


def marker_path(cache_file: str | Path) -> Path:
    return Path(f"{cache_file}.watch.json")


def write_marker(cache_file: str | Path, *, schedule: str, strategy: str, started_by: str) -> None:
    """Record that this process watches the environment (best effort: a read-only directory
    only loses the restart notice)."""
    data = {
        "pid": os.getpid(),
        "host": HOST,
        "started_at": iso(utcnow()),
        "schedule": schedule,
        "strategy": strategy,
        "started_by": started_by,
    }
    with contextlib.suppress(OSError):
        marker_path(cache_file).write_text(json.dumps(data), encoding="utf-8")


def clear_marker(cache_file: str | Path) -> None:
    """Remove this process's marker (another live watcher's is left alone)."""
    path = marker_path(cache_file)
    found = _read(path)
    if found is not None and found.get("pid") == os.getpid() and found.get("host") == HOST:
        path.unlink(missing_ok=True)


def running_watch(cache_file: str | Path) -> dict[str, Any] | None:
    """The marker of a watch that is still running (this process or another on this host)."""
    found = _read(marker_path(cache_file))
    if found is None:
        return None
    pid, host = found.get("pid"), found.get("host")
    alive = (pid == os.getpid() and host == HOST) or alive_elsewhere(pid, host)
    return found if alive else None


def ended_watch(cache_file: str | Path) -> dict[str, Any] | None:
    """The marker of a watch whose process died without stopping it (removed once read)."""
    path = marker_path(cache_file)
    found = _read(path)
    if found is None or running_watch(cache_file) is not None:
        return None
    if found.get("host") != HOST:  # another machine's: we cannot tell
        return None
    path.unlink(missing_ok=True)
    return found


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
