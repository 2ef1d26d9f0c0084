"""The D365 F&O metadata service client."""

from d365sync_nb.d365.client import D365MetadataClient, label_path
from d365sync_nb.d365.request_log import REQUEST_COLUMNS, REQUEST_ERRORS, RequestRow
from d365sync_nb.d365.stats import HttpStats

__all__ = [
    "REQUEST_COLUMNS",
    "REQUEST_ERRORS",
    "D365MetadataClient",
    "HttpStats",
    "RequestRow",
    "label_path",
]
