"""One syncer of a cache at a time, across processes: an advisory lock beside the cache file.

The lock is ``<cache file>.sync.lock`` (``flock``, exclusive, never waited for). A watch holds it
(:class:`CacheLock`) from a check's version request to the end of the sync it starts. A process's
manual syncs (``manager.start`` from any surface) share one hold of it (:func:`hold_shared`) from
their version check to the end of their sessions: sessions of two versions of one environment
(it was upgraded mid-sync) may run side by side in one process, as the manager allows. Whoever
finds the lock taken does not sync: a watcher records ``skipped_running``, a manual start raises
``SessionConflictError``. The operating system releases the lock when a process dies.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


class CacheLock:
    """``if lock.acquire(): ... lock.release()`` (or ``with``, which raises nothing when taken:
    check :attr:`held`)."""

    def __init__(self, cache_file: str | Path) -> None:
        self.path = Path(f"{cache_file}.sync.lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another holder has it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover - Windows
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            else:  # pragma: no cover - Windows
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)

    def __enter__(self) -> CacheLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.release()


_SHARED: dict[str, tuple[CacheLock, int]] = {}  # cache file -> the process's lock, its holders
_GUARD = threading.Lock()


class SharedHold:
    """One holder's part of the process's shared hold; :meth:`release` once, when it ends."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._released = False

    def release(self) -> None:
        with _GUARD:
            if self._released:
                return
            self._released = True
            lock, holders = _SHARED.pop(self.key)
            if holders > 1:
                _SHARED[self.key] = (lock, holders - 1)
            else:
                lock.release()


def hold_shared(cache_file: str | Path) -> SharedHold | None:
    """Join (or take) this process's hold of the cache's lock; None when a watch or another
    process holds the lock."""
    key = str(Path(cache_file).resolve())
    with _GUARD:
        lock, holders = _SHARED.get(key, (None, 0))
        if lock is None:
            lock = CacheLock(cache_file)
            if not lock.acquire():
                return None
        _SHARED[key] = (lock, holders + 1)
    return SharedHold(key)
