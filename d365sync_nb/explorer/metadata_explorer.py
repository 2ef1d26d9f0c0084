"""The metadata explorer of one environment's cache: :class:`MetadataExplorer` (versions,
tables, diffs, exports), :class:`Diff`, and :func:`read_only` (a cache file opened read-only).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from d365sync_nb.config import parse_languages
from d365sync_nb.errors import CacheError, ConfigurationError, NotInCacheError
from d365sync_nb.explorer.catalog import Catalog, Query
from d365sync_nb.explorer.diff import (
    changes_table,
    check_comparable,
    diff_builds,
    summarize,
    summary_text,
)
from d365sync_nb.explorer.table import Column, Table
from d365sync_nb.store.files import read_only_uri
from d365sync_nb.store.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from d365sync_nb.store import MetadataStore


@dataclass
class Diff:
    """The changes from one version (or environment) to another, and their summary."""

    from_version: dict[str, Any]
    to_version: dict[str, Any]
    changes: list[dict[str, Any]]
    summary: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def summary_text(self) -> str:
        return summary_text(self.summary)

    @property
    def title(self) -> str:
        return f"{describe_version(self.from_version)} → {describe_version(self.to_version)}"

    def table(self) -> Table:
        return changes_table(self.changes, self.title)

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        """``{"from", "to", "changes", "summary"}`` (the CLI's --json), at most ``limit``
        changes when given (``truncated`` then says how many were left out)."""
        shown = self.changes if limit is None else self.changes[:limit]
        out: dict[str, Any] = {
            "from": self.from_version["id"],
            "to": self.to_version["id"],
            "from_version": _version_brief(self.from_version),
            "to_version": _version_brief(self.to_version),
            "summary": self.summary,
            "summary_text": self.summary_text,
            "changes": shown,
        }
        if len(shown) < len(self.changes):
            out["truncated"] = len(self.changes) - len(shown)
        return out


class VersionSource:
    """The versions of one cache file, through a ``query`` function."""

    def __init__(self, query: Query, label: str) -> None:
        self.query = query
        self.label = label  # "this cache", or the other environment's file

    def versions(self) -> list[dict[str, Any]]:
        """Versions with a visible build, oldest first (by when they were first seen)."""
        rows = self.query(
            "SELECT id, application_version, platform_version, module_count, first_seen,"
            " last_detected, synced_at, current_build_id, has_metadata, has_labels FROM versions"
            " WHERE current_build_id IS NOT NULL ORDER BY julianday(first_seen), id",
            (),
        )
        return [
            {
                **dict(r),
                "has_metadata": bool(r["has_metadata"]),
                "has_labels": bool(r["has_labels"]),
            }
            for r in rows
        ]

    def resolve(self, ref: str | int | None, *, complete: bool = False) -> dict[str, Any]:
        """A version by id or application version (whole dot-separated parts: ``10.0.42``).

        ``None``: the environment's current version, i.e. the complete one it was last seen
        running (a partial one only when no version is complete). ``complete``: it must hold
        all of its metadata (entities, schemas, enumerations), not an ``entities_only`` sync.
        """
        versions = self.versions()
        usable = [v for v in versions if v["has_metadata"]] if complete else versions
        if not usable:
            raise NotInCacheError(
                f"No synced metadata in {self.label} yet: run a full sync first "
                "(d365sync sync, or %d365sync start)"
            )
        if ref is None or (isinstance(ref, str) and not ref.strip()):
            pool = [v for v in usable if v["has_metadata"]] or usable
            return max(
                pool, key=lambda v: (v["last_detected"] or "", v["synced_at"] or "", v["id"])
            )
        text = str(ref).strip()
        if text.isdigit():
            found = [v for v in versions if v["id"] == int(text)]
        else:
            found = [v for v in versions if v["application_version"] == text] or [
                v for v in versions if (v["application_version"] or "").startswith(text + ".")
            ]
        if len(found) == 1 and (found[0] in usable):
            return found[0]
        known = ", ".join(describe_version(v) for v in usable)
        if len(found) > 1:
            raise ConfigurationError(f"{text!r} matches several versions in {self.label}: {known}")
        if found:
            raise NotInCacheError(
                f"{describe_version(found[0])} in {self.label} has no complete metadata (a "
                f"partial sync); synced versions: {known}"
            )
        raise NotInCacheError(f"No version {text!r} in {self.label}; synced versions: {known}")


class MetadataExplorer:
    """Tables, diffs and exports of one environment's cached metadata."""

    def __init__(self, store: MetadataStore, language: str = "en-us") -> None:
        self.store = store
        self.language = language
        self.source = VersionSource(lambda sql, params: store.db.rows(sql, params), "this cache")

    def versions(self) -> list[dict[str, Any]]:
        return self.source.versions()

    def catalog(self, version: str | int | None = None, *, complete: bool = False,
                language: str | None = None) -> Catalog:  # fmt: skip
        """The tables of a version (default: the environment's current complete version);
        ``complete``: refuse a partial one; ``language``: of the label texts (default: the
        connection's)."""
        v = self.source.resolve(version, complete=complete)
        return Catalog(
            self.source.query,
            v["current_build_id"],
            _one_language(language) or self.language,
            describe_version(v),
            complete=v["has_metadata"],
        )

    # tables ---------------------------------------------------------------------------------
    def entities(self, pattern: str | None = None, *, version: str | int | None = None,
                 category: str | None = None) -> Table:  # fmt: skip
        return self.catalog(version).entities(pattern, category)

    def fields(self, entity: str, *, version: str | int | None = None,
               language: str | Sequence[str] | None = None) -> Table:  # fmt: skip
        """An entity's fields; ``language``: the labels' language, or several (``["en-us",
        "de"]`` or ``"en-us,de"``): then one ``label_<language>`` column each."""
        languages = parse_languages(language)
        table = self.catalog(version, language=languages[0] if languages else None).fields(entity)
        if len(languages) < 2:
            return table
        at = table.column_names.index("label")
        texts = [
            [r[at] for r in self.catalog(version, language=lang).fields(entity).rows]
            for lang in languages
        ]
        cols = (
            *table.columns[:at],
            *(Column(f"label_{lang}") for lang in languages),
            *table.columns[at + 1 :],
        )
        rows = [
            (*row[:at], *(t[i] for t in texts), *row[at + 1 :])
            for i, row in enumerate(table.rows)
        ]
        title = f"{table.title} in {', '.join(languages)}"
        return Table(table.name, cols, rows, title, table.meta)

    def relations(self, entity: str, *, version: str | int | None = None) -> Table:
        return self.catalog(version).relations(entity)

    def actions(self, entity: str, *, version: str | int | None = None) -> Table:
        return self.catalog(version).actions(entity)

    def enums(self, pattern: str | None = None, *, version: str | int | None = None) -> Table:
        return self.catalog(version).enums(pattern)

    def members(self, enum: str, *, version: str | int | None = None) -> Table:
        return self.catalog(version).members(enum)

    def labels(self, pattern: str | None = None, *, missing: bool = False,
               version: str | int | None = None, language: str | None = None,
               untranslated: bool = False) -> Table:  # fmt: skip
        """The labels a version references in ``language`` (default: the connection's);
        ``untranslated``: those with a text in the connection's language but none in
        ``language``."""
        cat = self.catalog(version, language=language)
        if untranslated:
            if cat.language == self.language:
                raise ConfigurationError(
                    f"--untranslated compares a language with {self.language} (the "
                    "connection's): give another one with --language, e.g. de"
                )
            return cat.untranslated(self.language, pattern)
        return cat.labels(pattern, missing=missing)

    def coverage(self, *, version: str | int | None = None,
                 language: str | Sequence[str] | None = None) -> Table:  # fmt: skip
        """Per language (default: those the version was synced in): labels found, empty,
        missing, failed and not synced among the ids the version references."""
        return self.catalog(version).coverage(parse_languages(language))

    def describe(self, entity: str, *, version: str | int | None = None,
                 language: str | None = None) -> dict[str, Any]:  # fmt: skip
        """One entity: its data entity row, fields, keys, relations and actions (JSON-ready),
        labels in ``language`` (default: the connection's)."""
        cat = self.catalog(version, language=language)
        name = cat.resolve_entity(entity)
        rows = [r for r in cat.entities().records() if r["public_entity"] == name]
        fields = cat.fields(name).records()
        return {
            "version": cat.version,
            "language": cat.language,
            "entity": name,
            "data_entity": rows[0] if rows else None,
            "keys": [f["name"] for f in fields if f["is_key"]],
            "fields": fields,
            "relations": cat.relations(name).records(),
            "actions": cat.actions(name).records(),
        }

    def export(self, directory: str | Path, fmt: str = "csv", *,
               version: str | int | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Write every table of a version to ``directory``, one CSV or Parquet file each."""
        from d365sync_nb.explorer.export import export

        return export(self.catalog(version, complete=True), directory, fmt)

    # diff -----------------------------------------------------------------------------------
    def diff(self, from_version: str | int | None = None,
             to_version: str | int | None = None) -> Diff:  # fmt: skip
        """Changes between two versions of this cache; by default its two latest complete ones
        (in the order they were first seen); ``from_version`` alone: to the latest;
        ``to_version`` alone: from the version before it."""
        source = self.source
        complete = [v for v in source.versions() if v["has_metadata"]]  # by first seen
        if to_version is None and from_version is None:
            if len(complete) < 2:
                have = ", ".join(describe_version(v) for v in complete) or "none"
                raise NotInCacheError(
                    f"A diff needs two synced versions; this cache has {len(complete)} ({have}). "
                    "Sync again after the environment's upgrade, give --from/--to, or compare "
                    "with another environment (--against)"
                )
            old, new = complete[-2], complete[-1]
        elif to_version is None:  # from a version to the latest
            old = source.resolve(from_version, complete=True)
            new = complete[-1]
            if new["id"] == old["id"]:
                raise NotInCacheError(
                    f"No synced version after {describe_version(old)}: give --to (synced: "
                    f"{', '.join(describe_version(v) for v in complete)})"
                )
        elif from_version is None:  # to a version from the one before it
            new = source.resolve(to_version, complete=True)
            at = next(i for i, v in enumerate(complete) if v["id"] == new["id"])
            if at == 0:
                raise NotInCacheError(
                    f"No synced version before {describe_version(new)}: give --from (synced: "
                    f"{', '.join(describe_version(v) for v in complete)})"
                )
            old = complete[at - 1]
        else:
            old = source.resolve(from_version, complete=True)
            new = source.resolve(to_version, complete=True)
        if old["id"] == new["id"]:
            raise ConfigurationError(
                f"--from and --to are the same version ({describe_version(old)})"
            )
        changes = diff_builds(
            source.query, ("main", old["current_build_id"]), ("main", new["current_build_id"])
        )
        return Diff(old, new, changes, summarize(changes))

    def diff_against(self, other: Path, *, version: str | int | None = None,
                     other_version: str | int | None = None) -> Diff:  # fmt: skip
        """Changes from this environment's version (default: current) to another
        environment's (its cache file; default: its current version)."""
        mine = self.source.resolve(version, complete=True)
        if Path(other).resolve() == Path(self.store.path).resolve():
            raise ConfigurationError("--against names this environment's own cache")
        with read_only(other) as query:
            theirs = VersionSource(query, f"the cache {other}").resolve(
                other_version, complete=True
            )
        with read_only(self.store.path, attach=other) as query:
            check_comparable(query, "other", other)
            changes = diff_builds(
                query, ("main", mine["current_build_id"]), ("other", theirs["current_build_id"])
            )
        theirs = {**theirs, "environment": Path(other).stem}
        return Diff(mine, theirs, changes, summarize(changes))


def _one_language(language: str | None) -> str | None:
    """A language tag, lower case; None when not given. One line when not a tag."""
    languages = parse_languages(language)
    if len(languages) > 1:
        raise ConfigurationError(f"Give one language here, not {', '.join(languages)}")
    return languages[0] if languages else None


@contextmanager
def read_only(path: Path, *, attach: Path | None = None) -> Iterator[Query]:
    """A query function on a cache file opened read-only (``attach``: another one, as the
    schema ``other``)."""
    path = Path(path)
    for file in (path, attach):
        if file is not None and not Path(file).is_file():
            raise CacheError(f"No cache file at {file}")
    try:
        conn = sqlite3.connect(read_only_uri(path), uri=True)
        if attach is not None:
            conn.execute("ATTACH DATABASE ? AS other", (read_only_uri(attach),))
    except sqlite3.Error as exc:
        raise CacheError(f"Cannot open the cache file {attach or path}: {exc}") from None
    try:
        _check_schema(conn, "main", path)
        if attach is not None:
            _check_schema(conn, "other", attach)
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row

    def query(sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"{path} is not a usable d365sync cache ({exc})") from None

    try:
        yield query
    finally:
        conn.close()


def _check_schema(conn: sqlite3.Connection, schema: str, path: Path) -> None:
    """Refuse a cache written by a newer package, as opening it for writing does."""
    try:
        row = conn.execute(
            f"SELECT value FROM {schema}.meta WHERE key = 'schema_version'"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise CacheError(f"{path} is not a usable d365sync cache ({exc})") from None
    if row is not None and str(row[0]).isdigit() and int(row[0]) > SCHEMA_VERSION:
        raise CacheError(
            f"The cache file {path} has schema version {row[0]}, newer than this package knows "
            f"({SCHEMA_VERSION}); upgrade d365sync_nb to read it"
        )


def _recency(v: dict[str, Any]) -> tuple[str, str, int]:
    """Order of versions by when the environment last ran them, then by sync."""
    return (v["last_detected"] or "", v["synced_at"] or "", v["id"])


def describe_version(v: dict[str, Any]) -> str:
    """``version 2 (10.0.42.2150)``, with the environment when it is another one's."""
    app = v.get("application_version")
    text = f"version {v['id']}" + (f" ({app})" if app else "")
    return f"{v['environment']} {text}" if v.get("environment") else text


def _version_brief(v: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "application_version", "platform_version", "synced_at", "environment")
    return {k: v.get(k) for k in keys if k in v}
