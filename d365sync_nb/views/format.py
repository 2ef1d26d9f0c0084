"""Numbers and durations as text: the one formatter of each kind every surface uses."""

from __future__ import annotations

from typing import Any


def clock(seconds: float | None) -> str:
    """Whole seconds as a clock: ``7s``, ``2m05s``; ``–`` when unknown (an ETA, a session)."""
    if seconds is None:
        return "–"
    whole = max(0, round(seconds))
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def duration(seconds: float | None) -> str:
    """A measured time: ``0.4 s``, ``12.3 s``, then ``2m05s``; ``–`` when unknown."""
    if seconds is None:
        return "–"
    return f"{seconds:.1f} s" if seconds < 60 else clock(seconds)


def count(value: int) -> str:
    """A count with thousands separators: ``27,045``."""
    return f"{value:,}"


def figure(value: Any) -> str:
    """A table cell's figure: ``–`` for none, floats to 2 places, counts with separators."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return count(value)
    return str(value)
