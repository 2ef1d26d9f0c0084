"""What each strategy does with each data phase, given what the cache already holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from d365sync_nb.models import SyncPhase, SyncStrategy

METADATA_PHASES = (SyncPhase.ENTITIES, SyncPhase.SCHEMAS, SyncPhase.ENUMERATIONS)
DATA_PHASES = (*METADATA_PHASES, SyncPhase.LABELS)


class Action(StrEnum):
    """What a data phase does. Only FETCH and FETCH_MISSING send requests."""

    FETCH = "fetch"  # ask the service for all of it
    FETCH_MISSING = "fetch_missing"  # labels: only ids the cache has no text for
    REUSE = "reuse"  # copy this version's previous build
    SHARE = "share"  # copy from another environment's cache with identical modules
    SKIP = "skip"  # not part of this strategy


@dataclass
class SharingSource:
    """A complete build with identical modules in another environment's cache file."""

    path: Path
    build_id: int
    environment: str
    has_labels: bool


@dataclass
class SyncPlan:
    """The action of each data phase (entities, schemas, enumerations, labels)."""

    actions: dict[SyncPhase, Action] = field(default_factory=dict)
    previous_build: int | None = None
    previous_complete: bool = False
    sharing: SharingSource | None = None
    message: str | None = None

    def action(self, phase: SyncPhase) -> Action:
        return self.actions.get(phase, Action.SKIP)

    @property
    def has_metadata_after(self) -> bool:
        """True when entities, schemas and enumerations all end up in the new build."""
        actions = [self.action(p) for p in METADATA_PHASES]
        if Action.SKIP in actions:
            return False
        return Action.REUSE not in actions or self.previous_complete

    @property
    def has_labels_after(self) -> bool:
        return self.action(SyncPhase.LABELS) != Action.SKIP


def needs_sync(
    strategy: SyncStrategy,
    version: dict[str, Any] | None,
    languages: tuple[str, ...] = (),
    have_languages: set[str] | None = None,
) -> bool:
    """False when the version's visible build already has what the strategy brings (labels in
    each of ``languages``, when ``have_languages`` says which it has)."""
    if not version or version.get("current_build_id") is None:
        return True
    has_meta, has_labels = version["has_metadata"], version["has_labels"]
    if has_labels and have_languages is not None and not set(languages) <= have_languages:
        has_labels = False  # a language was added
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
    """Decide each data phase's action; ``previous_build`` is this version's visible build and
    ``previous_complete`` says whether it holds all three metadata collections."""
    plan = SyncPlan(previous_build=previous_build, previous_complete=previous_complete)

    def metadata(action: Action) -> dict[SyncPhase, Action]:
        return dict.fromkeys(METADATA_PHASES, action)

    if strategy == SyncStrategy.FULL:
        plan.actions = {**metadata(Action.FETCH), SyncPhase.LABELS: Action.FETCH}
    elif strategy == SyncStrategy.FULL_WITHOUT_LABELS:
        plan.actions = metadata(Action.FETCH)
    elif strategy == SyncStrategy.ENTITIES_ONLY:
        keep = Action.REUSE if previous_build is not None else Action.SKIP
        plan.actions = {
            SyncPhase.ENTITIES: Action.FETCH,
            SyncPhase.SCHEMAS: keep,
            SyncPhase.ENUMERATIONS: keep,
        }
    elif strategy == SyncStrategy.LABELS_ONLY:
        plan.actions = {**metadata(Action.REUSE), SyncPhase.LABELS: Action.FETCH}
    elif strategy == SyncStrategy.INCREMENTAL:
        reuse = previous_build is not None and previous_complete
        plan.actions = {
            **metadata(Action.REUSE if reuse else Action.FETCH),
            SyncPhase.LABELS: Action.FETCH_MISSING,
        }
    elif strategy == SyncStrategy.SHARING_MODE:
        if sharing is not None:
            plan.sharing = sharing
            labels = Action.SHARE if sharing.has_labels else Action.SKIP
            plan.actions = {**metadata(Action.SHARE), SyncPhase.LABELS: labels}
            plan.message = (
                f"Copied from the cache of {sharing.environment}, which runs identical modules"
            )
        else:
            plan.actions = {**metadata(Action.FETCH), SyncPhase.LABELS: Action.FETCH}
            plan.message = "No cached environment with identical modules: ran a full sync instead"
    return plan
