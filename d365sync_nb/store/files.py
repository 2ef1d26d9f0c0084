"""Where cache files are and how another one is opened: one file per environment, read-only
when it is not ours."""

from __future__ import annotations

from pathlib import Path


def store_path(cache_dir: Path, environment_name: str) -> Path:
    """The cache file of an environment in ``cache_dir``."""
    return cache_dir / f"{environment_name}.sqlite3"


def read_only_uri(path: str | Path) -> str:
    """An SQLite URI opening ``path`` read-only (for ``connect(..., uri=True)`` and ATTACH)."""
    return f"{Path(path).resolve().as_uri()}?mode=ro"
