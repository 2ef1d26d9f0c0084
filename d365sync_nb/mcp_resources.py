"""The MCP server's resources, prompts and resource updates (imported with the ``mcp`` SDK).

Resources (JSON, read on the server's default connection; secrets redacted like the tools'):

- ``d365sync://sessions``: running sessions and the recent history;
- ``d365sync://sessions/{session_id}``: one session, as ``d365fo_get_sync_progress`` answers;
- ``d365sync://sessions/{session_id}/requests``: its request log, the last
  :data:`MAX_REQUESTS` attempts;
- ``d365sync://entities/{name}``: one entity, as ``d365fo_describe_entity`` answers;
- ``d365sync://versions``: the cached versions with their application versions.

:class:`ResourceUpdates` follows the manager's progress snapshots and tells subscribed clients
that a session's resource changed, at most every :data:`UPDATE_INTERVAL` seconds per session
(always when its status changes): on the 2026-07-28 protocol through the SDK's subscription
bus (``subscriptions/listen``), on earlier ones through ``resources/subscribe``.

Prompts render a bounded first message an assistant host shows as a slash command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp_types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from d365sync_nb import diagnostics, metadata_tools, tools
from d365sync_nb.connection import registry
from d365sync_nb.errors import D365SyncError
from d365sync_nb.models import SyncSession
from d365sync_nb.redaction import redact
from d365sync_nb.views import SessionView

log = logging.getLogger(__name__)

SCHEME = "d365sync://"
SESSIONS = f"{SCHEME}sessions"
VERSIONS = f"{SCHEME}versions"
MAX_REQUESTS = 200  # attempts of a session's request log a resource shows (the last ones)
MAX_SESSIONS = 20  # recent sessions in d365sync://sessions
UPDATE_INTERVAL = 0.5  # least seconds between two updates of one session's resource
PROMPT_CHARS = 8000  # a prompt's text is cut here
JSON = "application/json"


def session_uri(session_id: str) -> str:
    return f"{SESSIONS}/{session_id}"


def _json(data: Any) -> str:
    try:
        secrets = registry.secrets(None)
    except D365SyncError as exc:  # fail closed, as the tools do
        raise ResourceError(f"Answer withheld: cannot collect secrets to redact ({exc})") from None
    return json.dumps(redact(data, secrets), indent=2)


def _manager() -> Any:
    return registry.connection(None).manager


def _answer(answer: dict[str, Any]) -> str:
    """A tool's answer as a resource: its JSON, or a resource error with its one-line error."""
    if not answer.get("success"):
        raise ResourceNotFoundError(answer.get("error") or "not found")
    return json.dumps(answer, indent=2)


# -- resources -------------------------------------------------------------------------------
def add_resources(server: MCPServer) -> None:
    @server.resource(SESSIONS, name="sessions", title="Sync sessions", mime_type=JSON,
                     description="Running sync sessions and the most recent ones recorded "
                     f"(up to {MAX_SESSIONS}), newest first, each with its summary")  # fmt: skip
    def sessions() -> str:
        manager = _manager()
        return _json({
            "running": [s.summary() for s in manager.get_active_sessions()],
            "recent": [s.summary() for s in manager.get_session_history(limit=MAX_SESSIONS)],
        })  # fmt: skip

    @server.resource(f"{SESSIONS}/{{session_id}}", name="session", title="One sync session",
                     mime_type=JSON, description="One session as d365fo_get_sync_progress "
                     "answers: summary, phases, counts, http record, and once ended its "
                     "diagnosis. Updated while it runs (subscribe to follow it)")  # fmt: skip
    async def session(session_id: str) -> str:
        return _answer(await tools.d365fo_get_sync_progress(session_id=session_id))

    @server.resource(f"{SESSIONS}/{{session_id}}/requests", name="session-requests",
                     title="A session's request log", mime_type=JSON,
                     description=f"The last {MAX_REQUESTS} requests a session sent: phase, "
                     "endpoint, status or error, attempt, latency, retry cause, activity id "
                     "(ms-dyn-aid)")  # fmt: skip
    async def session_requests(session_id: str) -> str:
        manager = _manager()
        try:
            sid = manager.find_session_id(session_id)
            rows = await asyncio.to_thread(manager.get_request_log, sid)
        except D365SyncError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        shown = rows[-MAX_REQUESTS:]
        return _json({"session_id": sid, "total_count": len(rows),
                      "left_out": len(rows) - len(shown), "requests": shown})  # fmt: skip

    @server.resource(f"{SCHEME}entities/{{name}}", name="entity", title="One entity",
                     mime_type=JSON, description="One entity of the cached metadata, as "
                     "d365fo_describe_entity answers: data entity, keys, fields, relations, "
                     "actions")  # fmt: skip
    async def entity(name: str) -> str:
        return _answer(await metadata_tools.d365fo_describe_entity(name=name))

    @server.resource(VERSIONS, name="versions", title="Cached versions", mime_type=JSON,
                     description="The versions in the cache: global version id, application "
                     "and platform versions, when synced, whether metadata and labels are "
                     "complete, counts")  # fmt: skip
    def versions() -> str:
        summary = _manager().cache_summary()
        return _json({"environment": summary["environment"], "versions": summary["versions"]})


# -- updates ---------------------------------------------------------------------------------
class ResourceUpdates:
    """Tells subscribed clients that a session's resource (and the session list) changed.

    Listens to a manager's progress snapshots; publishes ``d365sync://sessions/{id}`` at most
    every :data:`UPDATE_INTERVAL` seconds per session, and at once (with
    ``d365sync://sessions``, and ``d365sync://versions`` when it completed) when a session's
    status changes. Clients on the 2026-07-28 protocol get them through the SDK's bus
    (``subscriptions/listen``); earlier clients through ``resources/subscribe``.
    """

    def __init__(self, bus: SubscriptionBus) -> None:
        self.bus = bus
        self._last: dict[str, tuple[float, str]] = {}  # session id -> (when, status)
        self._legacy: dict[str, set[Any]] = {}  # uri -> sessions (resources/subscribe)

    def serve_legacy_subscribe(self, server: MCPServer) -> None:
        """``resources/subscribe`` and ``resources/unsubscribe`` for pre-2026-07-28 clients
        (MCPServer serves only ``subscriptions/listen``; the low-level server takes both)."""
        lowlevel = server._lowlevel_server

        async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
            self._legacy.setdefault(str(params.uri), set()).add(ctx.session)
            return EmptyResult()

        async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
            self._legacy.get(str(params.uri), set()).discard(ctx.session)
            return EmptyResult()

        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams,
                                     unsubscribe)  # fmt: skip

    async def on_snapshot(self, session: SyncSession) -> None:
        """A manager listener (called with each throttled snapshot)."""
        now = time.monotonic()
        status = session.status.value
        when, before = self._last.get(session.session_id, (0.0, ""))
        changed = status != before
        if not changed and now - when < UPDATE_INTERVAL:
            return
        self._last[session.session_id] = (now, status)
        uris = [session_uri(session.session_id)]
        if changed:
            uris.append(SESSIONS)
            if session.status.value == "completed":
                uris.append(VERSIONS)
        if session.status.is_final:
            self._last.pop(session.session_id, None)
        for uri in uris:
            await self.publish(uri)

    async def publish(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri=uri))
        for client in list(self._legacy.get(uri, ())):
            try:
                await client.send_resource_updated(uri)
            except Exception:  # that client has gone: forget it
                log.debug("dropping a resources/subscribe client of %s", uri, exc_info=True)
                self._legacy[uri].discard(client)


# -- prompts ---------------------------------------------------------------------------------
def _bounded(text: str) -> str:
    if len(text) <= PROMPT_CHARS:
        return text
    return text[: PROMPT_CHARS - 40].rstrip() + "\n[... cut to stay short ...]"


def add_prompts(server: MCPServer) -> None:
    @server.prompt(name="diagnose_last_sync", title="Diagnose the last sync",
                   description="Why the last metadata sync (or the given session) was slow or "
                   "failed: its verdict, http record and failed requests, for the assistant "
                   "to explain and suggest what to do")  # fmt: skip
    def diagnose_last_sync(session_id: str | None = None) -> str:
        manager = _manager()
        try:
            sid = manager.find_session_id(session_id)
            session, log_rows = diagnostics.session_with_log(manager, sid)
        except D365SyncError as exc:
            return f"There is no sync session to diagnose ({exc}); start one first."
        found = diagnostics.diagnose(session, log_rows)
        facts = {
            "session": session.summary(),
            "outcome": SessionView(session).outcome,
            "verdict": found.verdict,
            "findings": found.findings,
            "http": session.http.model_dump(mode="json", exclude={"by_phase", "concurrency"}),
            "failed_requests": found.failed_requests[:10],
        }
        return _bounded(
            "Diagnose this Dynamics 365 F&O metadata sync for me. Say in two or three sentences "
            "whether it was healthy, slow or failed and why, then what I should do (for failed "
            "requests, quote their ms-dyn-aid activity ids for Microsoft support). The server "
            f"recorded:\n\n{_json(facts)}\n\nMore: the resource d365sync://sessions/{sid}/requests "
            "(its request log) and d365fo_get_sync_history (earlier sessions, to compare)."
        )

    @server.prompt(name="what_changed_in_last_upgrade", title="What changed in the last upgrade",
                   description="The differences between the two latest synced versions (the "
                   "summary and the first changes), for the assistant to summarise")  # fmt: skip
    def what_changed_in_last_upgrade() -> str:
        manager = _manager()
        try:
            diff = manager.explorer.diff(None, None)
        except D365SyncError as exc:
            return (
                f"I wanted to know what changed in the last upgrade, but: {exc}. Tell me how to "
                "get two synced versions (sync again after the upgrade with d365fo_start_sync)."
            )
        shown = diff.to_dict(limit=40)
        return _bounded(
            "Summarise what changed in this Dynamics 365 F&O environment's last upgrade, for a "
            "developer whose integrations use its data entities: what was added, removed and "
            "changed, and which changes could break an integration (removed entities or "
            f"fields, changed keys or types).\n\n{diff.title}: {diff.summary_text}\n\n"
            f"{_json(shown)}\n\nd365fo_diff_versions (limit up to 500) lists more changes; "
            "d365fo_describe_entity shows an entity as it is now."
        )

    @server.prompt(name="is_my_cache_current", title="Is my cache current",
                   description="Whether the cached metadata matches the version the environment "
                   "runs now (asks the assistant to call d365fo_check_version)")  # fmt: skip
    def is_my_cache_current() -> str:
        manager = _manager()
        summary = manager.cache_summary()
        cached = [
            {k: v[k] for k in ("global_version_id", "application_version", "synced_at",
                               "has_metadata", "has_labels")}
            for v in summary["versions"]
        ]
        return _bounded(
            "Is my local cache of this Dynamics 365 F&O environment's metadata current? Call "
            "the tool d365fo_check_version: it asks the environment which version it runs now "
            "and compares it with the cache. Then tell me in one or two sentences whether the "
            "cache is current and, if not, start a sync with d365fo_start_sync and wait for it "
            "with d365fo_wait_sync.\n\nThe cache holds these versions of "
            f"{summary['environment']}:\n\n{_json(cached)}"
        )
