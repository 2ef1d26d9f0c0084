"""Three assistant tools over the cached metadata: search it, describe an entity, and diff two
versions. Like the five sync tools (:mod:`d365sync_nb.tools`): ``async def`` returning a
JSON-ready dict, failure as a value, secrets redacted, and output bounded (``truncated`` or
``more`` says what was left out). The cache is read off the event loop (``asyncio.to_thread``),
so a sync running on the same loop keeps going. The MCP server serves both sets.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Annotated, Any

from pydantic import Field

from d365sync_nb import tool_results as results
from d365sync_nb.connection import registry
from d365sync_nb.errors import ConfigurationError, NotInCacheError
from d365sync_nb.explorer import describe_version
from d365sync_nb.operations import diff as diff_operation
from d365sync_nb.operations import search as search_operation
from d365sync_nb.operations.spec import REQUIRED, Arg
from d365sync_nb.tools import Profile, Result, ToolFn, ToolSpec, as_tool, integer_argument

MAX_HITS = 100
MAX_CHANGES = 500
MAX_ITEMS = 300  # fields, relations and actions of one entity

EntityName = Annotated[
    str,
    Field(description="A data entity, public entity or collection (entity set) name, any case"),
]
VersionRef = Annotated[
    str | int | None,
    Field(description="A cached global version id (as in d365fo_get_sync_history) or an "
          "application version such as '10.0.42.2150'; omit for the default"),
]  # fmt: skip
Language = Annotated[
    str | None,
    Field(description="The language of the label texts, e.g. 'de' or 'en-us'; omit for the "
          "connection's language. A language the cache has no text in gives empty labels"),
]  # fmt: skip
Changes = Annotated[
    int,
    Field(description=f"Most changes to list, 1 to {MAX_CHANGES} (clamped); the summary "
          "always counts all of them", json_schema_extra={"minimum": 1, "maximum": MAX_CHANGES}),
]  # fmt: skip
_PROFILE = inspect.Parameter("profile", inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Profile)  # fmt: skip
NOTHING_SYNCED = (
    "No metadata is cached for this environment yet: start a sync with d365fo_start_sync "
    "(strategy 'full'), then ask again"
)


def _clamp(value: Any, name: str, top: int) -> tuple[int, int]:
    requested = integer_argument(value, name)
    return requested, min(top, max(1, requested))


def _explorer(profile: str | None) -> Any:
    conn = registry.connection(profile)
    explorer = conn.manager.explorer
    if not explorer.versions():
        raise NotInCacheError(NOTHING_SYNCED)
    return conn, explorer


def _search_parameters(fn: ToolFn) -> ToolFn:
    """The search operation's arguments (the tool's own bound on ``limit``), plus ``profile``."""
    fn.__signature__ = search_operation.OPERATION.tool_signature(  # type: ignore[attr-defined]
        replace={
            "text": Arg("text", "Words to look for in names and label texts", default=REQUIRED,
                        positional=True),
            "limit": Arg("limit", f"Most hits to return, 1 to {MAX_HITS} (clamped)", kind=int,
                         default=20, minimum=1, maximum=MAX_HITS, keyword_only=False),
        },
        extra=[_PROFILE],
    )  # fmt: skip
    return fn


@as_tool
@_search_parameters
async def d365fo_search_metadata(text: str, limit: int = 20, profile: str | None = None) -> Result:
    """Search the cached entities, fields, enumerations and members by name and label."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError("text must be some words to look for, e.g. 'customer'")
    requested, used = _clamp(limit, "limit", MAX_HITS)
    conn, explorer = _explorer(profile)
    found = await asyncio.to_thread(conn.manager.search, text, used + 1)
    hits = found[:used]
    version = explorer.source.resolve(None)
    answer: Result = {
        "success": True,
        "environment": conn.settings.base_url,
        "version": describe_version(version),
        "hits": [{k: h[k] for k in ("kind", "name", "label", "parent")} for h in hits],
        "total_count": len(hits),
        "more": len(found) > used,  # more hits than the limit: narrow the words or raise it
        "message": f"{len(hits)} hit(s) for {text.strip()!r} in {describe_version(version)}"
        + ("" if hits else "; try fewer or other words, or a prefix")
        + ("; there are more (raise limit or add words)" if len(found) > used else ""),
    }
    if used != requested:
        answer["notice"] = f"limit {requested} is outside 1..{MAX_HITS}; used {used} instead"
    return answer


@as_tool
async def d365fo_describe_entity(
    name: EntityName,
    global_version_id: VersionRef = None,
    language: Language = None,
    profile: Profile = None,
) -> Result:
    """One entity: its data entity, keys, fields with types and label texts (in ``language``),
    relations and actions."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError("name must be an entity name, e.g. 'CustomersV3'")
    conn, explorer = _explorer(profile)
    described = await asyncio.to_thread(
        explorer.describe, name, version=global_version_id, language=language
    )
    fields = described["fields"]
    answer: Result = {"success": True, "environment": conn.settings.base_url, **described}
    truncated = {}
    for part in ("fields", "relations", "actions"):
        if len(described[part]) > MAX_ITEMS:
            answer[part] = described[part][:MAX_ITEMS]
            truncated[part] = len(described[part]) - MAX_ITEMS
    if truncated:
        answer["truncated"] = truncated
    answer["message"] = (
        f"{described['entity']} ({described['version']}, labels in {described['language']}): "
        f"{len(fields)} fields, keys "
        f"{', '.join(described['keys']) or 'none'}, {len(described['relations'])} relations, "
        f"{len(described['actions'])} actions"
    )
    return answer


def _diff_parameters(fn: ToolFn) -> ToolFn:
    """The diff operation's arguments (versions as ids or application versions), plus the
    tool's ``limit`` and ``profile``."""
    fn.__signature__ = diff_operation.OPERATION.tool_signature(  # type: ignore[attr-defined]
        annotate={"from_version": VersionRef, "to_version": VersionRef},
        replace={"against": Arg("against", "Compare with another environment's cache instead: "
                                "a profile, base URL, cache file or cache name; from_version "
                                "is then this environment's, to_version the other's")},
        extra=[
            inspect.Parameter("limit", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=50,
                              annotation=Changes),
            _PROFILE,
        ],
    )  # fmt: skip
    return fn


@as_tool
@_diff_parameters
async def d365fo_diff_versions(
    from_version: str | int | None = None,
    to_version: str | int | None = None,
    limit: int = 50,
    against: str | None = None,
    profile: str | None = None,
) -> Result:
    """What changed between two cached versions: a summary and the first changes."""
    requested, used = _clamp(limit, "limit", MAX_CHANGES)
    conn, _ = _explorer(profile)
    values = diff_operation.OPERATION.bind(
        {"from_version": from_version, "to_version": to_version, "against": against}
    )
    diff = (await asyncio.to_thread(diff_operation.call, conn.manager, **values)).diff
    answer: Result = {
        "success": True,
        "environment": conn.settings.base_url,
        **diff.to_dict(limit=used),
        "total_count": len(diff.changes),
        "message": f"{diff.title}: {diff.summary_text}",
    }
    labels = [c for c in diff.changes if c["kind"] == "label"]
    if labels:  # label texts changed: listed apart, so a limit on the rest never hides them
        answer["label_changes"] = labels[:used]
        if len(labels) > used:
            answer["label_changes_truncated"] = len(labels) - used
    if used != requested:
        answer["notice"] = f"limit {requested} is outside 1..{MAX_CHANGES}; used {used} instead"
    return answer


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "d365fo_search_metadata",
        "Search cached metadata",
        "Full-text search (prefix match) of the cached D365 F&O metadata: data entities, "
        "public entities, fields, enumerations and their members, by name and label text. "
        f"Returns up to limit (1..{MAX_HITS}) hits with kind, name, label and parent (the entity "
        "or enumeration a field or member belongs to). Needs a completed sync.",
        d365fo_search_metadata,
        read_only=True,
        result=results.SearchAnswer,
    ),
    ToolSpec(
        "d365fo_describe_entity",
        "Describe an entity",
        "One entity of the cached metadata, named by its data entity, public entity or "
        "collection name: the data entity row (category, flags, label), its key fields, every "
        "field (type, key, mandatory, allow edit, dimension, label id and text, enumeration), "
        "its relations (navigation properties with cardinality and constraints) and actions. "
        "Label texts are in the connection's language unless `language` (e.g. 'de') is given. "
        "An unknown name fails with close matches.",
        d365fo_describe_entity,
        read_only=True,
        result=results.DescribeAnswer,
    ),
    ToolSpec(
        "d365fo_diff_versions",
        "Diff two versions",
        "What changed between two cached versions of the environment (by default its two "
        "latest synced ones, e.g. before and after an upgrade): a summary per kind (entity, "
        "data_entity, field, navigation, action, enumeration, member: added, removed, changed; "
        "label: label texts changed) and the first `limit` changes, each with kind, parent, "
        "name, change, and for a change the attribute with its before and after values. "
        "`label_changes` lists the changed label texts (attribute: the language, before and "
        "after: the texts) for the labels both versions use. With against, the same between "
        "this environment's cache and another's.",
        d365fo_diff_versions,
        read_only=True,
        result=results.DiffAnswer,
    ),
)

__all__ = ["TOOLS", "d365fo_describe_entity", "d365fo_diff_versions", "d365fo_search_metadata"]
