"""Look-ups of what a user typed: session ids (or a unique prefix), global version ids,
statuses, phases and dates, each as the value the store wants or one readable error."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from d365sync_nb.errors import ConfigurationError, SessionNotFoundError
from d365sync_nb.models import PHASE_NAMES, SyncStatus

MAX_VERSION_ID = 2**63 - 1  # SQLite's largest integer
MIN_PREFIX = 4  # characters of a session id prefix


def as_session_id(value: str) -> str:
    """A full session id (a UUID), or SessionNotFoundError."""
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise SessionNotFoundError(
            f"No sync session with id {value!r} (session ids are UUIDs)"
        ) from None


def as_version_id(value: Any) -> int:
    """A global version id (an integer from 1), or ConfigurationError."""
    try:
        version = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"Global version id must be an integer, not {value!r}") from None
    if not 1 <= version <= MAX_VERSION_ID:
        raise ConfigurationError(
            f"Global version id must be between 1 and {MAX_VERSION_ID}, not {str(version)[:24]}"
        )
    return version


def as_time(value: datetime | str | None, name: str) -> datetime | None:
    """A datetime from a date or ISO time (naive means UTC); ConfigurationError otherwise."""
    if value is None or isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ConfigurationError(
                f"{name} must be a date or time like 2026-11-30 or 2026-11-30T14:00, not "
                f"{str(value)[:40]!r}"
            ) from None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment is not None:
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 with an offset: not a moment in UTC
            raise ConfigurationError(
                f"{name} is out of range: {str(value)[:40]!r} is not a time in UTC"
            ) from None
    return moment


def as_limit(value: Any) -> int:
    """A history limit from Python or text: a whole number (at least 1), else one line."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigurationError(f"limit must be an integer, not {value!r:.40}")
    try:
        return max(1, int(value))
    except ValueError:
        raise ConfigurationError(f"limit must be an integer, not {value!r:.40}") from None


def as_status(value: str | None) -> str | None:
    """A session status's value (``completed``), or ConfigurationError listing them."""
    if value is None:
        return None
    try:
        return SyncStatus(str(value).strip().lower()).value
    except ValueError:
        valid = ", ".join(s.value for s in SyncStatus)
        raise ConfigurationError(f"Unknown status {value!r}; one of: {valid}") from None


def check_phase(phase: str | None) -> None:
    """ConfigurationError unless ``phase`` is None or a phase name."""
    if phase is not None and phase not in PHASE_NAMES:
        valid = ", ".join(sorted(PHASE_NAMES))
        raise ConfigurationError(f"Unknown phase {phase!r}; one of: {valid}")


def session_id_from_prefix(text: str, ids_starting_with: Callable[[str], Iterable[str]]) -> str:
    """The session id that ``text`` names: a full id, or a prefix (4+ characters) that
    ``ids_starting_with(prefix)`` finds exactly one id for; SessionNotFoundError otherwise."""
    prefix = str(text).strip().lower()
    try:
        return str(uuid.UUID(prefix))
    except ValueError:
        pass
    if len(prefix) < MIN_PREFIX or any(c not in "0123456789abcdef-" for c in prefix):
        raise SessionNotFoundError(
            f"No sync session with id {str(text)[:40]!r} (session ids are UUIDs; a unique "
            "prefix of 4+ characters also works)"
        )
    matches = sorted({i for i in ids_starting_with(prefix) if i.startswith(prefix)})
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SessionNotFoundError(f"No sync session with id {str(text)[:40]!r}")
    raise SessionNotFoundError(
        f"Session id prefix {prefix!r} matches {len(matches)} sessions; give more of it"
    )
