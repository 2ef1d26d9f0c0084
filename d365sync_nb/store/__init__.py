"""The local SQLite metadata cache."""

from d365sync_nb.store.cache import MetadataStore, store_path

__all__ = ["MetadataStore", "store_path"]
