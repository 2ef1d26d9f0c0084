"""``%d365sync connect``: the notebook's one connection (a profile, a URL, or the emulator)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d365sync_nb import connection
from d365sync_nb.automation.marker import ended_watch
from d365sync_nb.config import resolve_settings
from d365sync_nb.connection import Connection, add_connection_arguments, connection_options
from d365sync_nb.errors import ConfigurationError, D365Error
from d365sync_nb.metadata import EnvironmentVersion
from d365sync_nb.notebook.config import D365Sync
from d365sync_nb.notebook.state import state
from d365sync_nb.views.session import counts_text

NAME = "connect"
SUMMARY = "connect to --profile NAME, --base-url URL, or --demo (the embedded emulator)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser, scale_default=None)  # demo defaults: D365Sync.demo_*


@dataclass
class ConnectionInfo:
    """What ``connect`` found: where, which version the environment runs, what is cached."""

    connection: Connection
    version_id: int | None = None
    environment: EnvironmentVersion | None = None
    unreachable: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    ended_watch: dict[str, Any] | None = None  # a watch whose kernel (process) stopped

    def lines(self) -> list[str]:
        conn = self.connection
        if conn.emulator is not None:
            opts = conn.emulator.options
            kind = f"embedded emulator, {opts.scale} dataset, {opts.latency_ms:g} ms latency"
        else:
            kind = f"profile {conn.settings.profile}" if conn.settings.profile else "environment"
        lines = [
            f"Connected to {conn.settings.base_url} ({kind})",
            f"Cache: {conn.manager.store.path}",
        ]
        if conn.manager.cache_notice:
            lines.append(f"Note: {conn.manager.cache_notice}")
        if self.ended_watch:
            w = self.ended_watch
            lines.append(
                f"Note: the watch started {w.get('started_at')} ({w.get('schedule')}, "
                f"by the {w.get('started_by')}, pid {w.get('pid')}) ended when its process "
                "stopped (a kernel restart, or a killed process): this cache is not watched now; "
                "start it again with %d365sync watch"
            )
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
    parts = [
        f"version {v['global_version_id']} (synced {v['synced_at']}): "
        + counts_text(v.get("counts") or {})
        for v in cache.get("versions", [])
        if v.get("synced_at")
    ]
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
    concurrency: int | None = None,
    display: bool = True,
) -> ConnectionInfo:
    """Connect the notebook to a profile, a URL, ``D365FO_*`` variables or (``demo``) a fresh
    embedded emulator; report the environment's version and what the cache holds.

    Unset demo options and the cache directory come from :class:`D365Sync`. The previous
    connection is closed before the new one is made (refused while it runs a session; settings
    that cannot work are refused before it is closed).
    """
    connection.check_where(
        base_url=base_url, profile=profile, demo=demo, scale=scale, latency_ms=latency_ms
    )
    cfg = D365Sync.instance()
    old = state.connection
    running = old.manager.get_active_sessions() if old is not None else []
    watching = getattr(state.watch, "running", False)
    if old is not None and watching:
        raise ConfigurationError(
            f"A watch is running on {old.settings.base_url}; stop it first with "
            "%d365sync watch --stop"
        )
    if old is not None and running:
        raise ConfigurationError(
            f"Session {running[0].session_id} is still running on {old.settings.base_url}; "
            "wait for it or cancel it before connecting again"
        )
    if cache_dir is None:
        cache_dir = cfg.cache_dir
    if not demo:  # a mistyped URL or profile fails here and keeps the current connection
        resolve_settings(
            profile=profile, base_url=base_url, cache_dir=cache_dir, concurrency=concurrency
        )
    bridge = state.ensure_bridge()
    state.replace_connection(None)  # returns its lease first: its cache file may be the new one's
    conn = connection.connect(
        profile=profile,
        base_url=base_url,
        demo=demo,
        scale=scale or cfg.demo_scale,
        latency_ms=(cfg.demo_latency_ms if latency_ms is None else latency_ms) if demo else None,
        cache_dir=cache_dir,
        concurrency=concurrency,
        repair_cache=True,  # the notebook syncs: a damaged cache file is moved aside (kept)
    )
    info = ConnectionInfo(connection=conn, ended_watch=ended_watch(conn.manager.store.path))
    try:
        try:
            info.version_id, info.environment = bridge.run(conn.manager.detect_version())
        except D365Error as exc:
            info.unreachable = str(exc)
        info.cache = conn.manager.cache_summary()
    except BaseException:
        conn.close()
        raise
    state.replace_connection(conn)
    if display:
        print(info)
    return info


def run(args: argparse.Namespace) -> None:
    connect(**connection_options(args))
