"""``connect``: the notebook's one connection (a profile, a URL, or the embedded emulator)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d365sync_nb import connection as core_connection
from d365sync_nb.connection import Connection
from d365sync_nb.errors import ConfigurationError, D365Error
from d365sync_nb.metadata import EnvironmentVersion
from d365sync_nb.notebook.context import context
from d365sync_nb.sync.manager import SyncSessionManager
from d365sync_nb.sync.registry import forget_manager


@dataclass
class ConnectionInfo:
    """What ``connect`` found: where, which version the environment runs, what is cached."""

    connection: Connection
    version_id: int | None = None
    environment: EnvironmentVersion | None = None
    unreachable: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        conn = self.connection
        if conn.is_demo:
            opts = conn.emulator.options
            kind = f"embedded emulator, {opts.scale} dataset, {opts.latency_ms:g} ms latency"
        else:
            kind = f"profile {conn.settings.profile}" if conn.settings.profile else "environment"
        lines = [
            f"Connected to {conn.settings.base_url} ({kind})",
            f"Cache: {conn.manager.store.path}",
        ]
        env = self.environment
        if env is not None:
            lines.append(
                f"Environment: {len(env.modules)} modules, application "
                f"{env.application_version}, platform {env.platform_version} "
                f"-> global version {self.version_id}"
            )
        else:
            lines.append(
                f"Environment: not reachable ({self.unreachable}); the cache can still be browsed"
            )
        lines.append("Cache holds: " + _cache_text(self.cache))
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def _cache_text(cache: dict[str, Any]) -> str:
    synced = [v for v in cache.get("versions", []) if v.get("synced_at")]
    parts = []
    for v in synced:
        c = v.get("counts") or {}
        what = ", ".join(
            f"{c[k]:,} {k.replace('_', ' ')}"
            for k in ("data_entities", "public_entities", "enumerations", "labels")
            if k in c
        )
        parts.append(f"version {v['global_version_id']} (synced {v['synced_at']}): {what}")
    held = "; ".join(parts) if parts else "nothing synced yet"
    return f"{held}; {cache.get('sessions_recorded', 0)} sessions recorded"


def connect(
    *,
    profile: str | None = None,
    base_url: str | None = None,
    demo: bool = False,
    scale: str | None = None,
    latency_ms: float | None = None,
    cache_dir: str | Path | None = None,
    display: bool = True,
) -> ConnectionInfo:
    """Connect the notebook to a profile, a URL, ``D365FO_*`` variables or (``demo``) a fresh
    embedded emulator; report the environment's version and what the cache holds."""
    if sum(bool(x) for x in (profile, base_url, demo)) > 1:
        raise ConfigurationError("Give only one of --profile, --base-url and --demo")
    opts = context.options
    if not demo and (scale is not None or latency_ms is not None):
        raise ConfigurationError("--scale and --latency-ms only apply with --demo")
    old = context.connection
    if old is not None and old.manager.get_active_sessions():
        running = old.manager.get_active_sessions()[0].session_id
        raise ConfigurationError(
            f"Session {running} is still running on {old.settings.base_url}; "
            "wait for it or cancel it before connecting again"
        )
    bridge = context.ensure_bridge()
    conn = core_connection.connect(
        profile=profile,
        base_url=base_url,
        demo=demo,
        scale=scale or opts.demo_scale,
        latency_ms=(opts.demo_latency_ms if latency_ms is None else latency_ms) if demo else None,
        cache_dir=cache_dir if cache_dir is not None else opts.cache_dir,
        manager_options={"notify_interval": opts.throttle_interval},
    )
    info = ConnectionInfo(connection=conn)
    try:
        info.version_id, info.environment = bridge.run(conn.manager.detect_version())
    except D365Error as exc:
        info.unreachable = str(exc)
    except BaseException:
        conn.close()
        raise
    info.cache = conn.manager.cache_summary()
    if old is not None:
        context.forget_connection()
        _close(old, keep=conn.manager)
    context.connection = conn
    if display:
        print(info)
    return info


def _close(conn: Connection, *, keep: SyncSessionManager) -> None:
    """Stop an old connection's emulator; release its manager unless the new one reuses it."""
    conn.close()
    if conn.manager is not keep and conn.settings.base_url != keep.settings.base_url:
        forget_manager(conn.manager.settings)
        conn.manager.store.close()


def get_connection() -> Connection:
    """The notebook's connection (``.manager``, ``.settings``, ``.emulator`` for demos)."""
    if context.connection is None:
        context.require()
    assert context.connection is not None
    return context.connection
