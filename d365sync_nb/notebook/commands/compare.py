"""``%d365sync compare``: two sessions phase by phase, as a DataFrame."""

from __future__ import annotations

import argparse

import pandas as pd

from d365sync_nb import diagnostics
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.notebook import tables
from d365sync_nb.notebook.state import state

NAME = "compare"
SUMMARY = "two sessions phase by phase: seconds, requests, retries, 429s (b / a ratios)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="the first session: id or unique prefix (the baseline)")
    parser.add_argument("b", help="the second session: id or unique prefix")


def compare(a: str, b: str) -> pd.DataFrame:
    """One row per phase: status, seconds, requests, retries, 429s and items of session ``a``
    and session ``b`` side by side, with ``seconds_ratio`` and ``requests_ratio`` (b / a)."""
    manager, _ = state.require()
    first = manager.get_sync_session(state.resolve_session(_given(a, "a")))
    second = manager.get_sync_session(state.resolve_session(_given(b, "b")))
    return tables.compare_frame(diagnostics.compare(first, second), first, second)


def _given(value: str | None, name: str) -> str:
    if value is None or not str(value).strip():
        raise ConfigurationError(f"compare needs two session ids (or prefixes); {name} is missing")
    return str(value)


def run(args: argparse.Namespace) -> pd.DataFrame:
    return compare(args.a, args.b)
