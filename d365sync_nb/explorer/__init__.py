"""The metadata explorer: the cached metadata as tables, diffs between versions or environments,
and export. UI-free: surfaces turn :class:`Table` into DataFrames, text, JSON or CSV.

``MetadataExplorer(store, language)`` answers for one environment's cache; versions are named
by id (as in the sync history) or by application version (``10.0.42.2150``, or a unique prefix).
"""

from d365sync_nb.explorer.metadata_explorer import (
    Diff,
    MetadataExplorer,
    describe_version,
    read_only,
)
from d365sync_nb.explorer.table import Column, Table

__all__ = ["Column", "Diff", "MetadataExplorer", "Table", "describe_version", "read_only"]
