"""When a watch checks: every DURATION (``30s``, ``15m``, ``1h``, ``1d``) or a cron expression.

Cron expressions are parsed by croniter (it computes the next fire time after a moment, which is
all a watch needs); a bad expression or duration is one ConfigurationError line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from d365sync_nb.errors import ConfigurationError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 366 * 86400
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``1h``, ``1d`` (a number and one unit)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigurationError(
            f"Bad duration {str(text)[:40]!r}: give a number with s, m, h or d (30s, 15m, 1h, 1d)"
        )
    seconds = float(match[1]) * UNITS[match[2].lower()]
    if not 1 <= seconds <= MAX_SECONDS:
        raise ConfigurationError(f"Bad duration {text!r}: it must be from 1 second to 366 days")
    return seconds


@dataclass(frozen=True)
class Schedule:
    """Every ``every`` seconds (checking at once first), or at the times of ``cron`` (UTC)."""

    every: float | None = None
    cron: str | None = None

    @classmethod
    def parse(cls, every: str | None = None, cron: str | None = None) -> Schedule:
        if bool(every) == bool(cron):
            raise ConfigurationError("Give one schedule: --every DURATION or --cron EXPRESSION")
        if every:
            return cls(every=parse_duration(every))
        _check_cron(str(cron))
        return cls(cron=" ".join(str(cron).split()))

    def first(self, now: datetime) -> datetime:
        """The first check of a watch started at ``now``."""
        return now if self.every is not None else self.next_after(now)

    def next_after(self, moment: datetime) -> datetime:
        """The next check strictly after ``moment`` (UTC)."""
        if self.every is not None:
            return moment + timedelta(seconds=self.every)
        from croniter import croniter

        return croniter(self.cron, moment.astimezone(UTC)).get_next(datetime)

    def __str__(self) -> str:
        return f"every {_fmt(self.every)}" if self.every is not None else f"cron {self.cron!r}"


def parse_schedule_text(text: str, where: str = "schedule") -> Schedule:
    """A profile's ``schedule``: a duration (``15m``) or a cron expression (``0 2 * * *``)."""
    if _DURATION.match(text):
        return Schedule.parse(every=text)
    try:
        return Schedule.parse(cron=text)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc} (or a duration such as 15m)") from None


def _check_cron(expression: str) -> None:
    from croniter import croniter

    fields = expression.split()
    if not (expression.startswith("@") or len(fields) == 5):
        raise ConfigurationError(
            f"Bad cron expression {expression[:60]!r}: give 5 fields (minute hour day month "
            "weekday), e.g. '0 2 * * *' for 02:00 UTC every day"
        )
    try:
        croniter(expression, datetime.now(UTC))
    except (ValueError, KeyError) as exc:  # croniter's errors are ValueErrors
        detail = " ".join(str(exc).split())[:120]
        raise ConfigurationError(f"Bad cron expression {expression[:60]!r}: {detail}") from None


def _fmt(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            return f"{int(seconds // UNITS[unit])}{unit}"
    return f"{seconds:g}s"
