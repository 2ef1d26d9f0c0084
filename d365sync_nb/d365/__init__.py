"""The D365 F&O metadata service client."""

from d365sync_nb.d365.client import D365MetadataClient, label_path
from d365sync_nb.d365.stats import HttpStats

__all__ = ["D365MetadataClient", "HttpStats", "label_path"]
