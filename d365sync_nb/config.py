"""Connection settings: environment variables, named profiles, URL validation.

Profiles live in a TOML file (``$D365SYNC_PROFILES`` or ``<user config dir>/profiles.toml``)::

    [profiles.prod]
    base_url = "https://contoso.operations.dynamics.com"
    client_id = "..."
    tenant_id = "..."
    client_secret_env = "CONTOSO_SECRET"   # read the secret from this variable
    concurrency = 16                       # exactly 16 in flight; "auto" or absent: adaptive
    languages = ["en-us", "de", "da"]      # labels synced in these (default: language only)

Secrets are ``SecretStr``: they never appear in reprs, logs or errors.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from d365sync_nb.errors import ConfigurationError
from d365sync_nb.redaction import redact_url

APP_NAME = "d365sync_nb"
ADAPTIVE = "auto"  # a profile's ``concurrency`` for the adaptive default
DEFAULT_REQUEST_LOG_SESSIONS = 20
REQUEST_LOG_VARIABLE = "D365SYNC_REQUEST_LOG_SESSIONS"  # or request_log_sessions in a profile


class ConnectionSettings(BaseModel):
    """Everything needed to reach one environment and cache its metadata."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret: SecretStr | None = None
    cache_dir: Path | None = None
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="exactly this many requests in flight; None: adaptive (d365/limiter.py)",
    )
    language: str = "en-us"
    languages: tuple[str, ...] = Field(
        default=(),
        description="languages to sync labels in; empty: ``language`` only (the first is the "
        "explorer's default)",
    )
    profile: str | None = None
    name: str | None = None
    read_timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds without a byte before a read counts as stalled (3 stalls fail)",
    )
    request_deadline: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="seconds a collection request may take in flight, every attempt included "
        "(a label or version request: a fifth of it); a service dripping bytes ends then",
    )
    max_answer_mb: float = Field(
        default=256,
        gt=0,
        le=65536,
        description="the largest answer accepted, in MB once decompressed (not retried)",
    )
    request_log_sessions: int = Field(
        default=DEFAULT_REQUEST_LOG_SESSIONS,
        ge=0,
        le=1000,
        description="sessions whose request log (a row per request) is kept; aggregates stay",
    )

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        """Language tags are case-insensitive (the service answers ``en-US`` to ``en-us``): the
        cache keeps them lower-case."""
        return value.strip().lower() or "en-us"

    @model_validator(mode="before")
    @classmethod
    def _first_language(cls, data: object) -> object:
        """Languages given without a language: the first is the language (the explorer's)."""
        if isinstance(data, dict) and data.get("languages") and not data.get("language"):
            first = parse_languages(data["languages"])
            if first:
                return {**data, "language": first[0]}
        return data

    @field_validator("languages", mode="before")
    @classmethod
    def _languages(cls, value: object) -> tuple[str, ...]:
        return parse_languages(value)

    @property
    def sync_languages(self) -> tuple[str, ...]:
        """The languages a sync fetches labels in: ``languages``, else ``language``."""
        return self.languages or (self.language,)

    @property
    def is_loopback(self) -> bool:
        return is_loopback_url(self.base_url)

    @property
    def environment_name(self) -> str:
        """A file-name-safe name of the environment: host, plus port when not default."""
        if self.name:
            return self.name
        parts = urlsplit(self.base_url)
        host = (parts.hostname or "unknown").replace(":", "_")
        return f"{host}_{parts.port}" if parts.port else host

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or default_cache_dir()


def parse_languages(value: object) -> tuple[str, ...]:
    """``"en-us,de"``, ``["en-US", "de"]`` -> ``("en-us", "de")``: lower case (the service
    answers ``en-US`` to ``en-us``), in order, each once. Raises ConfigurationError."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigurationError(f"languages: expected a list of language tags, not {value!r}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"languages: expected language tags, not {item!r}")
        tag = item.strip().lower()
        if tag and not all(part.isalnum() for part in tag.split("-")):
            raise ConfigurationError(
                f"languages: {item.strip()[:20]!r} is not a language tag like en-us or de"
            )
        if tag and tag not in out:
            out.append(tag)
    return tuple(out)


def default_cache_dir() -> Path:
    override = os.environ.get("D365SYNC_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))


def validate_base_url(url: str) -> str:
    """Return the normalised base URL (scheme://host[:port]) or raise ConfigurationError."""
    example = "expected something like https://contoso.operations.dynamics.com"
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"No base URL given: {example}")
    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(
            f"Malformed base URL {redact_url(text)!r} ({exc}): {example}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"Malformed base URL {redact_url(text)!r}: {example}")
    if parts.username or parts.password:
        raise ConfigurationError(
            "The base URL must not contain credentials; use D365FO_CLIENT_ID/SECRET instead"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(
            f"The base URL {text!r} has a path or query; give only the environment root: {example}"
        )
    if parts.scheme == "http" and not is_loopback_url(text):
        raise ConfigurationError(f"Plain http is only allowed for loopback emulators: {example}")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def profiles_path() -> Path:
    override = os.environ.get("D365SYNC_PROFILES")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir(APP_NAME)) / "profiles.toml"


def load_profiles() -> dict[str, dict[str, object]]:
    path = profiles_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"Cannot read profiles file {path}: {exc}") from None
    profiles = data.get("profiles", {})
    return profiles if isinstance(profiles, dict) else {}


def profile_secrets(profile: str) -> set[str]:
    """The secrets a profile names (its ``client_secret`` and ``client_secret_env``'s value).

    Raises ConfigurationError when the profiles file cannot be read: redaction fails closed.
    """
    entry = load_profiles().get(profile) or {}
    if not isinstance(entry, dict):
        return set()
    found = {str(entry.get("client_secret") or "")}
    variable = entry.get("client_secret_env")
    if variable:
        found.add(os.environ.get(str(variable), ""))
    return found


def resolve_settings(
    *,
    profile: str | None = None,
    base_url: str | None = None,
    cache_dir: str | Path | None = None,
    concurrency: int | None = None,
) -> ConnectionSettings:
    """Settings from an explicit URL, a named profile, or the ``D365FO_*`` environment."""
    env = os.environ
    values: dict[str, object] = {}
    if profile:
        profiles = load_profiles()
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            raise ConfigurationError(
                f"Unknown profile {profile!r} (known: {known}; file: {profiles_path()})"
            )
        raw = dict(profiles[profile])
        secret_env = raw.pop("client_secret_env", None)
        if secret_env and env.get(str(secret_env)):
            raw["client_secret"] = env[str(secret_env)]
        values.update(raw)
        values["profile"] = profile
    if base_url:
        values["base_url"] = base_url
    if "base_url" not in values:
        if not env.get("D365FO_BASE_URL"):
            raise ConfigurationError(
                "No environment configured: pass a base URL or profile, set D365FO_BASE_URL, "
                "or use the embedded emulator (--demo)"
            )
        values["base_url"] = env["D365FO_BASE_URL"]
    for key, var in (
        ("client_id", "D365FO_CLIENT_ID"),
        ("tenant_id", "D365FO_TENANT_ID"),
        ("client_secret", "D365FO_CLIENT_SECRET"),
    ):
        if key not in values and env.get(var):
            values[key] = env[var]
    values["base_url"] = validate_base_url(str(values["base_url"]))
    if cache_dir is not None:
        if not str(cache_dir).strip():
            raise ConfigurationError("The cache directory is empty: give a directory path")
        values["cache_dir"] = Path(cache_dir)
    elif "cache_dir" in values:
        values["cache_dir"] = Path(str(values["cache_dir"])).expanduser()
    if concurrency is not None:
        values["concurrency"] = concurrency
    if "request_log_sessions" not in values and env.get(REQUEST_LOG_VARIABLE):
        values["request_log_sessions"] = env[REQUEST_LOG_VARIABLE]
    raw_concurrency = values.get("concurrency")
    if raw_concurrency == ADAPTIVE:
        values["concurrency"] = raw_concurrency = None
    if raw_concurrency is not None:
        try:
            concurrency_ok = int(str(raw_concurrency)) >= 1
        except ValueError:
            concurrency_ok = False
        if not concurrency_ok:
            raise ConfigurationError(
                f"concurrency must be an integer >= 1 or {ADAPTIVE!r}, not {raw_concurrency!r}"
            )
    try:
        return ConnectionSettings.model_validate(values)
    except ValidationError as exc:  # name the fields, never echo their values (secrets)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise ConfigurationError(f"Invalid settings: {problems}") from None
