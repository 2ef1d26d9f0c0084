"""Resolve where to sync from (URL, profile, environment, or the embedded emulator) and
hand back the environment's shared session manager."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d365sync_nb.config import ConnectionSettings, resolve_settings
from d365sync_nb.sync.manager import SyncSessionManager
from d365sync_nb.sync.registry import get_manager


@dataclass
class Connection:
    """A resolved environment, its manager, and the emulator when it is a demo."""

    settings: ConnectionSettings
    manager: SyncSessionManager
    emulator: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_demo(self) -> bool:
        return self.emulator is not None

    def describe(self) -> str:
        kind = "embedded emulator" if self.is_demo else (self.settings.profile or "environment")
        return f"{self.settings.base_url} ({kind}); cache {self.manager.store.path}"

    def close(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None


def connect(
    *,
    base_url: str | None = None,
    profile: str | None = None,
    demo: bool = False,
    scale: str = "small",
    latency_ms: float | None = None,
    cache_dir: str | Path | None = None,
    concurrency: int | None = None,
    emulator_options: dict[str, Any] | None = None,
    manager_options: dict[str, Any] | None = None,
) -> Connection:
    """Settings for a URL, a profile, ``D365FO_*`` variables, or (``demo``) a fresh emulator."""
    emulator = None
    name = None
    if demo:
        from d365sync_nb.emulator import Emulator

        opts = dict(emulator_options or {})
        if latency_ms is not None:
            opts["latency_ms"] = latency_ms
        emulator = Emulator(scale=scale, **opts)
        base_url = emulator.start()
        name = f"demo-{scale}"
    try:
        settings = resolve_settings(
            profile=None if demo else profile,
            base_url=base_url,
            cache_dir=cache_dir,
            concurrency=concurrency,
        )
        if name:
            settings = settings.model_copy(update={"name": name})
        manager = get_manager(settings, **(manager_options or {}))
    except BaseException:
        if emulator is not None:
            emulator.stop()
        raise
    return Connection(settings=settings, manager=manager, emulator=emulator)
