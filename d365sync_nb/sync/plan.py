"""What each strategy does with each phase, given what the cache already holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d365sync_nb.models import SyncPhase, SyncStrategy

METADATA_PHASES = (SyncPhase.ENTITIES, SyncPhase.SCHEMAS, SyncPhase.ENUMERATIONS)


@dataclass
class SharingSource:
    """A complete build with identical modules in another environment's cache file."""

    path: Path
    build_id: int
    environment: str
    has_labels: bool


@dataclass
class SyncPlan:
    """Per metadata phase: ``fetch`` from the service, ``copy`` from the previous build, or
    ``share`` from another cache; labels: ``all``, ``missing`` or ``skip``."""

    metadata: dict[SyncPhase, str] = field(default_factory=dict)
    labels: str = "skip"
    previous_build: int | None = None
    previous_complete: bool = False
    sharing: SharingSource | None = None
    message: str | None = None

    @property
    def has_metadata_after(self) -> bool:
        """True when entities, schemas and enumerations all end up in the new build."""
        if self.sharing is not None:
            return True
        actions = [self.metadata.get(p, "skip") for p in METADATA_PHASES]
        if "skip" in actions:
            return False
        return "copy" not in actions or self.previous_complete

    @property
    def has_labels_after(self) -> bool:
        return self.labels != "skip" or (self.sharing is not None and self.sharing.has_labels)


def needs_sync(strategy: SyncStrategy, version: dict[str, Any] | None) -> bool:
    """False when the version's visible build already has what the strategy brings."""
    if not version or version.get("current_build_id") is None:
        return True
    has_meta, has_labels = version["has_metadata"], version["has_labels"]
    if strategy in (SyncStrategy.FULL, SyncStrategy.INCREMENTAL):
        return not (has_meta and has_labels)
    if strategy == SyncStrategy.LABELS_ONLY:
        return not has_labels
    return not has_meta


def make_plan(
    strategy: SyncStrategy,
    previous_build: int | None,
    sharing: SharingSource | None,
    *,
    previous_complete: bool = False,
) -> SyncPlan:
    """Decide each phase's action; ``previous_build`` is this version's visible build and
    ``previous_complete`` says whether it holds all three metadata collections."""
    plan = SyncPlan(previous_build=previous_build, previous_complete=previous_complete)
    fetch_all = dict.fromkeys(METADATA_PHASES, "fetch")
    copy_all = dict.fromkeys(METADATA_PHASES, "copy")
    if strategy == SyncStrategy.FULL:
        plan.metadata, plan.labels = fetch_all, "all"
    elif strategy == SyncStrategy.FULL_WITHOUT_LABELS:
        plan.metadata = fetch_all
    elif strategy == SyncStrategy.ENTITIES_ONLY:
        keep = "copy" if previous_build is not None else "skip"
        plan.metadata = {
            SyncPhase.ENTITIES: "fetch",
            SyncPhase.SCHEMAS: keep,
            SyncPhase.ENUMERATIONS: keep,
        }
    elif strategy == SyncStrategy.LABELS_ONLY:
        plan.metadata, plan.labels = copy_all, "all"
    elif strategy == SyncStrategy.INCREMENTAL:
        reuse = previous_build is not None and previous_complete
        plan.metadata = copy_all if reuse else fetch_all
        plan.labels = "missing"
    elif strategy == SyncStrategy.SHARING_MODE:
        if sharing is not None:
            plan.sharing = sharing
            plan.metadata = dict.fromkeys(METADATA_PHASES, "share")
            plan.message = (
                f"Copied from the cache of {sharing.environment}, which runs identical modules"
            )
        else:
            plan.metadata, plan.labels = fetch_all, "all"
            plan.message = "No cached environment with identical modules: ran a full sync instead"
    return plan
