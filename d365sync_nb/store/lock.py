"""One sync of a cache at a time, across processes: an advisory lock beside the cache file.

The lock is ``<cache file>.sync.lock`` (``flock``, exclusive, never waited for). A watch holds it
from a check's version request to the end of the sync it starts; a manual sync (``manager.start``
from any surface) holds it from its version check to the end of its session. Whoever finds it
taken does not sync: a watcher records ``skipped_running``, a manual start raises
``SessionConflictError``. The operating system releases the lock when a process dies.
"""

from __future__ import annotations

import os
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
