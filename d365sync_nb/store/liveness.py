"""Which recorded sessions are really running: in this process, or in another one on this host."""

from __future__ import annotations

import os
import socket

HOST = socket.gethostname()

# Sessions running in this process (any manager): never "interrupted", their builds never orphans.
LIVE_SESSIONS: set[str] = set()


def alive_elsewhere(pid: int | None, host: str | None) -> bool:
    """True when ``pid`` is another process, alive on this host."""
    if not pid or host != HOST or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists all the same
        pass
    return True
