"""argparse types with documented ranges, shared by the CLI and the magics.

Every count a user can type has a range; a value outside it is one readable line, e.g.
``--limit: must be between 1 and 1000, not 0``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type accepting whole numbers from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be between {low} and {high}, not {_short(text)}"
            )
        return value

    parse.__name__ = "whole number"
    return parse


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {_short(text)}")
    return value


def probability(text: str) -> float:
    """A number from 0 to 1 (``nan`` refused)."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {_short(text)}")
    return value


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:21] + "..."
