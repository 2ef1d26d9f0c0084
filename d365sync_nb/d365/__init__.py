"""The D365 F&O metadata service client."""

from d365sync_nb.d365.client import ClientStats, D365MetadataClient, label_path

__all__ = ["ClientStats", "D365MetadataClient", "label_path"]
