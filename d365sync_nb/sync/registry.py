"""One session manager per environment and cache, shared by every surface in a process."""

from __future__ import annotations

import threading
from typing import Any

from d365sync_nb.config import ConnectionSettings
from d365sync_nb.sync.manager import SyncSessionManager

_managers: dict[tuple[str, str], SyncSessionManager] = {}
_lock = threading.Lock()


def get_manager(settings: ConnectionSettings, **options: Any) -> SyncSessionManager:
    """The process-wide manager for this environment and cache directory."""
    key = (settings.base_url, str(settings.resolved_cache_dir()))
    with _lock:
        manager = _managers.get(key)
        if manager is None:
            manager = SyncSessionManager(settings, **options)
            _managers[key] = manager
        return manager


def forget_manager(settings: ConnectionSettings) -> None:
    with _lock:
        _managers.pop((settings.base_url, str(settings.resolved_cache_dir())), None)
