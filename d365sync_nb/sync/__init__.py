"""Sync sessions: models, plan, runner, manager."""

from d365sync_nb.models import (
    PhaseProgress,
    PhaseStatus,
    StartResult,
    SyncPhase,
    SyncSession,
    SyncStatus,
    SyncStrategy,
)
from d365sync_nb.sync.manager import SyncSessionManager
from d365sync_nb.sync.registry import get_manager

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
