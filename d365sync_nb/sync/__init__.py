"""Running sync sessions: the plan per strategy, the phase runner, progress, and the manager.

The models live in :mod:`d365sync_nb.models`; :class:`SyncSessionManager` is the entry point.
"""

from d365sync_nb.sync.manager import SyncSessionManager

__all__ = ["SyncSessionManager"]
