"""Connections: where to sync from, and the process's one owner of session managers.

The one lifecycle, the same for every surface (CLI, notebook, tools/MCP)::

    conn = connect(...)      # settings from a URL, a profile, D365FO_* variables or a new emulator;
                             # leases the environment's manager (made on first lease)
    conn.manager             # the SyncSessionManager every surface of this process shares
    conn.close()             # returns the lease and stops the connection's own emulator;
                             # the last lease closes the manager's cache (once its sessions end)

There is one manager per cache file per process (a file is never written by two managers).
Leasing it again with other settings (base URL, credentials, concurrency) or manager options
(credential, transport, client options) is a ConfigurationError, never silently ignored.

The tools resolve ``profile`` arguments here too (:meth:`Registry.connection`): the default
connection (bound by the MCP server or a notebook, :func:`set_default_connection`), else one
connection per profile (or ``D365FO_*``), opened on first use and kept until
:meth:`Registry.close_opened`. Connection flags (``--base-url/--profile/--demo`` ...) are built
here once, for the CLI and the magics alike.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from d365sync_nb.arguments import bounded_int, non_negative_float
from d365sync_nb.config import (
    ConnectionSettings,
    load_profiles,
    profile_secrets,
    resolve_settings,
    validate_base_url,
)
from d365sync_nb.d365.limiter import DEFAULT_CEILING, DEFAULT_INITIAL
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.redaction import environment_secrets
from d365sync_nb.store import store_path
from d365sync_nb.sync.manager import SyncSessionManager

if TYPE_CHECKING:
    from d365sync_nb.emulator import Emulator

MAX_CONCURRENCY = 256
SCALES = ("small", "realistic")
# The connect() keywords that add_connection_arguments() defines, by their argparse names.
CONNECTION_OPTIONS = (
    "base_url", "profile", "demo", "scale", "latency_ms", "cache_dir", "concurrency"
)  # fmt: skip
# Settings that decide how a manager talks to its environment: two leases must agree on them
# (credentials only where a token is used: a loopback emulator needs none).
_BEHAVIOUR_FIELDS = ("base_url", "concurrency", "language", "languages")
_CREDENTIAL_FIELDS = ("client_id", "tenant_id", "client_secret")


@dataclass(eq=False)
class Connection:
    """A resolved environment, a lease on its manager, and the emulator when it is a demo."""

    settings: ConnectionSettings
    manager: SyncSessionManager
    emulator: Emulator | None = None
    closed: bool = field(default=False, init=False)

    @property
    def is_demo(self) -> bool:
        return self.emulator is not None

    def summary_line(self) -> str:
        """``<base url> (<what it is>); cache <file>``."""
        kind = "embedded emulator" if self.is_demo else (self.settings.profile or "environment")
        return f"{self.settings.base_url} ({kind}); cache {self.manager.store.path}"

    def close(self) -> None:
        """Return the manager lease and stop this connection's emulator (idempotent)."""
        if self.closed:
            return
        self.closed = True
        registry.forget(self)
        registry.release(self.manager)
        if self.emulator is not None:
            self.emulator.stop()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Connection({self.summary_line()}, {state})"


@dataclass
class _Lease:
    manager: SyncSessionManager
    options: dict[str, Any]
    count: int = 0


class Registry:
    """Owns the process's managers (one per cache file, shared by leases) and the connections
    the tools open by profile."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._leases: dict[Path, _Lease] = {}
        self._default: Connection | None = None
        self._opened: dict[str | None, Connection] = {}
        self._open_options: dict[str, Any] = {}

    # -- managers ------------------------------------------------------------------------
    def lease(
        self, settings: ConnectionSettings, *, repair_cache: bool = False, **options: Any
    ) -> SyncSessionManager:
        """The manager of this environment's cache file (made on first lease).

        Raises ConfigurationError when it exists with other settings or manager options.
        """
        key = store_path(settings.resolved_cache_dir(), settings.environment_name).resolve()
        with self._lock:
            lease = self._leases.get(key)
            if lease is None or lease.manager.closed:
                manager = SyncSessionManager(settings, repair_cache=repair_cache, **options)
                lease = _Lease(manager, options)
                self._leases[key] = lease
            else:
                _check_same(lease, settings, options)
                lease.manager.keep_open()  # its last lease may have gone while sessions ran
            lease.count += 1
            return lease.manager

    def release(self, manager: SyncSessionManager) -> None:
        """Return one lease; the last one closes the manager (when its sessions have ended)."""
        with self._lock:
            for key, lease in list(self._leases.items()):
                if lease.manager is manager:
                    lease.count -= 1
                    if lease.count <= 0:
                        manager.close()  # now, or when its running sessions have ended
                        if manager.closed:
                            del self._leases[key]
                    return

    def managers(self) -> list[SyncSessionManager]:
        """The open managers (one whose last lease went while it ran closes when it ends)."""
        with self._lock:
            for key, lease in list(self._leases.items()):
                if lease.manager.closed:
                    del self._leases[key]
            return [lease.manager for lease in self._leases.values()]

    # -- connections by profile (the tools) ------------------------------------------------
    @property
    def default(self) -> Connection | None:
        return self._default

    def set_default(self, conn: Connection | None) -> None:
        self._default = conn

    def connection(self, profile: str | None = None) -> Connection:
        """The default connection (for ``None`` or its own profile), else the one opened for
        ``profile`` (``None``: the ``D365FO_*`` variables), opened on first use."""
        with self._lock:
            default = self._default
            if (
                default is not None
                and not default.closed
                and profile in (None, default.settings.profile)
            ):
                return default
            conn = self._opened.get(profile)
            if conn is None or conn.closed:
                conn = connect(profile=profile, repair_cache=True, **self._open_options)
                self._opened[profile] = conn
            return conn

    def set_open_options(self, *, cache_dir: str | Path | None, concurrency: int | None) -> None:
        """Cache directory and concurrency for connections :meth:`connection` opens."""
        self._open_options = {"cache_dir": cache_dir, "concurrency": concurrency}

    def connections(self) -> list[Connection]:
        """The default connection and those opened by profile."""
        with self._lock:
            conns = [c for c in self._opened.values() if not c.closed]
            if (
                self._default is not None
                and not self._default.closed
                and self._default not in conns
            ):
                conns.append(self._default)
            return conns

    def close_opened(self) -> None:
        """Close the connections :meth:`connection` opened (not the default one)."""
        with self._lock:
            conns, self._opened = list(self._opened.values()), {}
        for conn in conns:
            conn.close()

    def forget(self, conn: Connection) -> None:
        """A closed connection is no longer the default nor a profile's connection."""
        with self._lock:
            if self._default is conn:
                self._default = None
            for key, opened in list(self._opened.items()):
                if opened is conn:
                    del self._opened[key]

    def secrets(self, profile: str | None = None) -> set[str]:
        """Every secret an answer could contain: the environment's, every leased manager's and,
        when a profile is named, that profile's. Raises ConfigurationError (fail closed) when
        the profiles file cannot be read."""
        found = environment_secrets()
        for manager in self.managers():
            if manager.settings.client_secret is not None:
                found.add(manager.settings.client_secret.get_secret_value())
        if profile:
            found |= profile_secrets(profile)
        return {s for s in found if s}


def _check_same(lease: _Lease, settings: ConnectionSettings, options: dict[str, Any]) -> None:
    have = lease.manager.settings
    fields = _BEHAVIOUR_FIELDS if have.is_loopback else _BEHAVIOUR_FIELDS + _CREDENTIAL_FIELDS
    differ = [f for f in fields if getattr(have, f) != getattr(settings, f)]
    differ += [
        name
        for name in sorted(set(options) | set(lease.options))
        if options.get(name) is not lease.options.get(name)
        and options.get(name) != lease.options.get(name)
    ]
    if differ:
        raise ConfigurationError(
            f"The cache {lease.manager.store.path} is already in use in this process with other "
            f"settings ({', '.join(differ)}); close that connection first or use another "
            "--cache-dir"
        )


registry = Registry()


def set_default_connection(conn: Connection | None) -> None:
    """Make ``conn`` the connection tool calls without a profile use (``None``: ``D365FO_*``)."""
    registry.set_default(conn)


@contextlib.contextmanager
def default_connection(conn: Connection) -> Iterator[Connection]:
    """``with default_connection(conn):`` bind the tools' default, restoring it afterwards."""
    previous = registry.default
    registry.set_default(conn)
    try:
        yield conn
    finally:
        registry.set_default(previous)


def check_where(
    *,
    base_url: str | None,
    profile: str | None,
    demo: bool,
    scale: str | None = None,
    latency_ms: float | None = None,
) -> None:
    """One place that says which of the connection options go together."""
    if sum(bool(x) for x in (base_url, profile, demo)) > 1:
        raise ConfigurationError("Give only one of --profile, --base-url and --demo")
    if not demo and (scale is not None or latency_ms is not None):
        raise ConfigurationError("--scale and --latency-ms only apply with --demo")


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
    repair_cache: bool = False,
    **manager_options: Any,
) -> Connection:
    """A new connection to a URL, a profile, ``D365FO_*`` variables or (``demo``) a fresh emulator.

    ``manager_options`` (``credential``, ``transport_factory``, ``client_options``) apply when
    this call makes the environment's manager and must match when it already exists.
    ``repair_cache`` (surfaces about to sync): a damaged cache file is moved aside and a new
    one started (``manager.cache_notice`` says so); else a damaged file is an error.
    """
    check_where(base_url=base_url, profile=profile, demo=demo)
    emulator = None
    name = None
    if demo:
        emulator = _start_emulator(scale, latency_ms, emulator_options)
        base_url = emulator.base_url
        name = f"demo-{scale}"
    try:
        settings = resolve_settings(
            profile=profile, base_url=base_url, cache_dir=cache_dir, concurrency=concurrency
        )
        if name:
            settings = settings.model_copy(update={"name": name})
        manager = registry.lease(settings, repair_cache=repair_cache, **manager_options)
    except BaseException:
        if emulator is not None:
            emulator.stop()
        raise
    return Connection(settings=settings, manager=manager, emulator=emulator)


def _start_emulator(
    scale: str, latency_ms: float | None, options: dict[str, Any] | None
) -> Emulator:
    """A started demo emulator; a bad option or an unusable port is a ConfigurationError."""
    from d365sync_nb.emulator import Emulator, EmulatorError

    opts = dict(options or {})
    if latency_ms is not None:
        opts["latency_ms"] = latency_ms
    try:
        emulator = Emulator(scale=scale, **opts)
        emulator.start()
    except EmulatorError as exc:
        raise ConfigurationError(f"The demo emulator cannot start: {exc}") from None
    return emulator


# -- connection flags, shared by the CLI and the magics -----------------------------------------
def add_connection_arguments(parser: argparse.ArgumentParser, *, scale_default: str | None) -> None:
    """``--base-url | --profile | --demo`` and the options that go with them."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--base-url", help="environment root, e.g. https://x.operations.dynamics.com"
    )
    where.add_argument("--profile", help="named profile from the profiles file")
    where.add_argument("--demo", action="store_true", help="start the embedded emulator")
    parser.add_argument(
        "--scale", choices=SCALES, default=scale_default, help="dataset size of --demo"
    )
    parser.add_argument(
        "--latency-ms", type=non_negative_float, default=None, help="--demo latency per request"
    )
    parser.add_argument("--cache-dir", help="cache directory (default: the user cache dir)")
    parser.add_argument(
        "--concurrency",
        type=bounded_int(1, MAX_CONCURRENCY),
        default=None,
        help=f"exactly N requests in flight, 1 to {MAX_CONCURRENCY} (default: adaptive, from "
        f"{DEFAULT_INITIAL} up to {DEFAULT_CEILING} as the service allows)",
    )


def connection_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`connect` keywords of the :func:`add_connection_arguments` options."""
    return {name: getattr(args, name) for name in CONNECTION_OPTIONS}


def connect_from_args(args: argparse.Namespace, **overrides: Any) -> Connection:
    """The connection named by :func:`add_connection_arguments` options (``overrides`` win)."""
    check_where(base_url=args.base_url, profile=args.profile, demo=args.demo,
                latency_ms=args.latency_ms)  # fmt: skip
    options = connection_options(args)
    options["scale"] = options["scale"] or "small"
    options.update(overrides)
    return connect(**options)


def cache_file_of(environment: str, cache_dir: Path) -> Path:
    """Another environment's cache file, named by its path, a base URL, a profile, or its cache
    name in ``cache_dir`` (``demo-small``); a ConfigurationError when there is none."""
    text = (environment or "").strip()
    if not text:
        raise ConfigurationError("Name the other environment: a profile, base URL or cache file")
    if "://" in text:
        settings = ConnectionSettings(base_url=validate_base_url(text), cache_dir=cache_dir)
        path = store_path(cache_dir, settings.environment_name)
    elif Path(text).expanduser().is_file():
        return Path(text).expanduser()
    elif text in load_profiles():
        settings = resolve_settings(profile=text)
        path = store_path(cache_dir, settings.environment_name)  # --cache-dir first
        if not path.is_file():
            path = store_path(settings.resolved_cache_dir(), settings.environment_name)
    else:
        path = store_path(cache_dir, text)
        if not path.is_file():
            names = sorted(p.stem for p in cache_dir.glob("*.sqlite3"))
            raise ConfigurationError(
                f"No environment {text!r}: not a cache file, base URL, profile, or cache in "
                f"{cache_dir} (caches there: {', '.join(names) or 'none'})"
            )
    if not path.is_file():
        raise ConfigurationError(
            f"No cache of {text!r} yet (expected {path}): sync that environment first"
        )
    return path
