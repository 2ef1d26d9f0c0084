"""The emulator's runtime options: the :class:`EmulatorOptions` fields, their ranges and the
name/type checks that runtime changes (``configure``, the admin API, CLI flags) go through."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .dataset import SCALES

__all__ = ["CORRUPT_MODES", "EmulatorError", "EmulatorOptionError", "EmulatorOptions",
           "coerce_options"]  # fmt: skip

CORRUPT_MODES = ("non_json", "truncated")
MAX_LATENCY_MS = 600_000.0  # ten minutes: anything longer is a typo
MAX_RETRY_AFTER = 3600.0
MAX_RELEASE_AFTER = 7 * 86400.0
LAST_RELEASE = 2  # dataset versions 1 and 2


class EmulatorError(Exception):
    """The emulator cannot run as asked (a busy or impossible port, a bad option); one line."""


class EmulatorOptionError(EmulatorError, ValueError):
    """An emulator option is out of range or of the wrong type (the message names it)."""


def _finite(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise EmulatorOptionError(f"{name} must be a number from {low:g} to {high:g}, not {value}")


@dataclass
class EmulatorOptions:
    """Runtime behaviour of the emulator; every field can be changed while it runs.

    scale/version/seed select the dataset; latency_ms delays each service request;
    max_concurrency answers 429 + Retry-After (retry_after seconds) beyond K in-flight requests;
    fault_rate is the per-request probability of a fault (half 503, half a dropped connection);
    token requires ``Authorization: Bearer <token>``; page_size turns on server-driven paging;
    corrupt ("non_json" | "truncated") breaks collection bodies; release_after moves the
    environment to its next release (version + 1) that many seconds after it is set (an upgrade
    while it runs, for a watch to find).
    """

    scale: str = "small"
    version: int = 1
    seed: int = 365
    latency_ms: float = 0.0
    max_concurrency: int | None = None
    retry_after: float = 1.0
    fault_rate: float = 0.0
    fault_seed: int = 365
    token: str | None = None
    page_size: int | None = None
    corrupt: str | None = None
    release_after: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retry_after, str):  # "0.2" from a CLI flag or JSON
            self.retry_after = coerce_options({"retry_after": self.retry_after})["retry_after"]
        self.validate()

    def validate(self) -> None:
        """Raise EmulatorOptionError (a ValueError) when an option is out of range."""
        if self.scale not in SCALES:
            raise EmulatorOptionError(
                f"unknown scale {self.scale!r}: expected one of {', '.join(SCALES)}"
            )
        if self.version not in range(1, LAST_RELEASE + 1):
            raise EmulatorOptionError(f"unknown emulator release {self.version!r}: expected 1 or 2")
        _finite("latency_ms", self.latency_ms, 0.0, MAX_LATENCY_MS)
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise EmulatorOptionError("max_concurrency must be >= 1 or None")
        _finite("retry_after", self.retry_after, 0.0, MAX_RETRY_AFTER)
        _finite("fault_rate", self.fault_rate, 0.0, 1.0)
        if self.page_size is not None and self.page_size < 1:
            raise EmulatorOptionError("page_size must be >= 1 or None")
        if self.release_after is not None:
            _finite("release_after", self.release_after, 0.0, MAX_RELEASE_AFTER)
        if self.corrupt is not None and self.corrupt not in CORRUPT_MODES:
            raise EmulatorOptionError(f"corrupt must be None or one of {', '.join(CORRUPT_MODES)}")

    def public_dict(self) -> dict[str, Any]:
        """Options as JSON-able dict, with the token redacted."""
        data = dataclasses.asdict(self)
        data["token"] = None if self.token is None else "***"
        return data


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "scale": (str,),
    "version": (int,),
    "seed": (int,),
    "latency_ms": (int, float),
    "max_concurrency": (int, type(None)),
    "retry_after": (int, float, str),
    "fault_rate": (int, float),
    "fault_seed": (int,),
    "token": (str, type(None)),
    "page_size": (int, type(None)),
    "corrupt": (str, type(None)),
    "release_after": (int, float, type(None)),
}


def coerce_options(changes: dict[str, Any]) -> dict[str, Any]:
    """Check option names and types; ``retry_after`` may be a numeric string like "0.2"."""
    unknown = set(changes) - set(_OPTION_TYPES)
    if unknown:
        raise EmulatorOptionError(f"unknown emulator option(s): {', '.join(sorted(unknown))}")
    out = {}
    for key, value in changes.items():
        types = _OPTION_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise EmulatorOptionError(f"option {key} has invalid value {str(value)[:40]!r}")
        if key == "retry_after":
            try:
                value = float(value)  # type: ignore[arg-type]  # isinstance-checked above
            except ValueError:
                raise EmulatorOptionError(f"retry_after must be a number, not {value!r}") from None
        out[key] = value
    return out
