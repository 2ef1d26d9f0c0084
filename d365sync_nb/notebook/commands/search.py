"""``%d365sync search``: full-text search of the cached metadata, as a DataFrame."""

from __future__ import annotations

import argparse

import pandas as pd

from d365sync_nb.arguments import bounded_int
from d365sync_nb.errors import ConfigurationError
from d365sync_nb.notebook import tables
from d365sync_nb.notebook.state import state

NAME = "search"
SUMMARY = "search the cached metadata (entities, properties, enumerations, labels)"
MAX_LIMIT = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="+", help="words to look for")
    parser.add_argument(
        "--limit",
        type=bounded_int(1, MAX_LIMIT),
        default=20,
        help=f"hits to show, 1 to {MAX_LIMIT}",
    )


def search(text: str, limit: int = 20) -> pd.DataFrame:
    """Search cached entities, properties, enumerations and labels (full text, prefix match)."""
    manager, _ = state.require()
    if not text or not text.strip():
        raise ConfigurationError("Nothing to search for: give some text, e.g. customer")
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigurationError(f"--limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return tables.search_frame(manager.search(text, limit=limit))


def run(args: argparse.Namespace) -> pd.DataFrame:
    return search(" ".join(args.text), args.limit)
