"""Sync sessions: models, plan, runner, manager."""

from d365sync_nb.sync.manager import StartResult, SyncSessionManager
from d365sync_nb.sync.registry import get_manager
from d365sync_nb.sync.session import (
    PhaseProgress,
    PhaseStatus,
    SyncPhase,
    SyncSession,
    SyncStatus,
    SyncStrategy,
)

__all__ = [
    "PhaseProgress",
    "PhaseStatus",
    "StartResult",
    "SyncPhase",
    "SyncSession",
    "SyncSessionManager",
    "SyncStatus",
    "SyncStrategy",
    "get_manager",
]
