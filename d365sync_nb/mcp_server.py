"""Serve the assistant tools over MCP, with the official ``mcp`` SDK (version 2): the sync tools
(:mod:`d365sync_nb.tools`), the metadata tools (:mod:`d365sync_nb.metadata_tools`), and the
resources, resource updates and prompts of :mod:`d365sync_nb.mcp_resources`.

``d365sync mcp [--profile NAME | --base-url URL | --demo]`` connects, then calls
:func:`serve_stdio` (or, with ``--http``, :func:`serve_http`: the SDK's Streamable HTTP
transport) with that :class:`~d365sync_nb.connection.Connection`: it is the tools' default
connection while the server runs. On stdio, stdout carries the protocol; logs go to stderr.
Sync sessions run as asyncio tasks on the server's event loop, so a session started by one
tool call keeps running between calls (and when a waiting call's client goes away); when the
server stops they are cancelled.

Every tool declares an ``outputSchema`` (its :class:`~d365sync_nb.tools.ToolSpec` ``result``
model) and answers with ``structuredContent`` valid against it, plus the same JSON as text; a
failure too (``is_error`` mirrors ``success: false``). Tools that report progress
(``d365fo_wait_sync``, ``d365fo_start_sync`` with ``wait_seconds``) send
``notifications/progress`` when the client gave a progress token.
"""

from __future__ import annotations

import contextlib
import hmac
import inspect
import ipaddress
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Annotated, Any

from d365sync_nb import automation_tools, metadata_tools, tools
from d365sync_nb.connection import Connection, registry
from d365sync_nb.errors import ConfigurationError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

log = logging.getLogger(__name__)

SERVER_NAME = "d365sync"
TOKEN_VARIABLE = "D365SYNC_MCP_TOKEN"
DEFAULT_HTTP_PORT = 8765
INSTRUCTIONS = (
    "Tools to sync Dynamics 365 Finance & Operations metadata into a local cache. "
    "d365fo_start_sync starts a background session and returns its session_id (give it "
    "wait_seconds to wait for the outcome at once). Then call d365fo_wait_sync with that id: "
    "it blocks until the session ends or its timeout passes, sends progress notifications "
    "meanwhile, and returns the outcome with a verdict; call it again if it answers "
    "still_running. Prefer it, or a subscription to the resource d365sync://sessions/{id} "
    "(updated while the session runs), to calling d365fo_get_sync_progress repeatedly: "
    "polling costs context. d365fo_cancel_sync stops a session. d365fo_list_sync_sessions "
    "shows what runs now and d365fo_get_sync_history what ran before (filter by status, "
    "strategy, global version id or start time). Once a sync has completed, the cached "
    "metadata answers questions without the service: d365fo_search_metadata finds entities, "
    "fields and enumerations by name or label; d365fo_describe_entity (or the resource "
    "d365sync://entities/{name}) gives an entity's fields, keys, labels and relations; "
    "d365fo_diff_versions says what changed between two synced versions (e.g. after an "
    "upgrade). Resources: d365sync://sessions, d365sync://sessions/{id}, "
    "d365sync://sessions/{id}/requests, d365sync://entities/{name}, d365sync://versions. "
    "d365fo_check_version says, with 3 cheap requests, whether the environment moved to a "
    "new version and a sync is due. Every tool answer has 'success'; when it is false, "
    "'error' says what went wrong and what to do."
)
SERVED = (*tools.TOOLS, *metadata_tools.TOOLS, *automation_tools.TOOLS)
MISSING_SDK = "The MCP server needs the 'mcp' package (version 2): pip install 'd365sync_nb[mcp]'"


def _import_sdk() -> Any:
    try:
        from mcp.server import mcpserver
    except ImportError:
        raise ConfigurationError(MISSING_SDK) from None
    return mcpserver


def build_server(connection: Connection) -> MCPServer:
    """An MCP server exposing the tools (:data:`SERVED`), resources and prompts on
    ``connection``.

    ``connection`` is the tools' default connection while the server runs; on shutdown,
    sessions still running are cancelled and connections opened per profile are closed.
    """
    mcpserver = _import_sdk()
    from mcp.server.subscriptions import InMemorySubscriptionBus

    from d365sync_nb import __version__, mcp_resources

    bus = InMemorySubscriptionBus()
    updates = mcp_resources.ResourceUpdates(bus)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[dict[str, Any]]:
        registry.set_default(connection)
        connection.manager.add_listener(updates.on_snapshot)
        try:
            yield {}
        finally:
            await cancel_running()
            connection.manager.remove_listener(updates.on_snapshot)
            registry.set_default(None)
            registry.close_opened()

    server = _server_class(mcpserver)(
        SERVER_NAME,
        title="D365 F&O metadata sync",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        subscriptions=bus,
    )
    for spec in SERVED:
        server.add_tool(
            _as_mcp_tool(spec, mcpserver.Context),
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=_annotations(spec),
        )
    mcp_resources.add_resources(server)
    mcp_resources.add_prompts(server)
    updates.serve_legacy_subscribe(server)
    return server


def _server_class(mcpserver: Any) -> Any:
    """MCPServer whose argument checks answer like every other failure of the tools: a
    ``success: false`` value with a one-line ``error``, an unknown argument included."""
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import ValidationError

    specs = {spec.name: spec for spec in SERVED}

    class SyncToolServer(mcpserver.MCPServer):
        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
            spec = specs.get(name)
            if spec is None:
                return await super().call_tool(name, arguments, context)
            known = tools.parameters(spec)
            unknown = sorted(set(arguments) - set(known))
            if unknown:
                return _as_result(
                    tools.rejected(
                        name,
                        arguments,
                        f"unknown argument {', '.join(map(repr, unknown))}; "
                        f"{name} takes {', '.join(known)}",
                    )
                )
            try:
                return await super().call_tool(name, arguments, context)
            except ToolError as exc:
                if not isinstance(exc.__cause__, ValidationError):
                    raise
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                    for e in exc.__cause__.errors(include_input=False, include_url=False)
                )
                return _as_result(tools.rejected(name, arguments, problems))

    return SyncToolServer


def _as_result(answer: dict[str, Any]) -> Any:
    """A tool's answer as a CallToolResult whose is_error mirrors 'success'."""
    from mcp.types import CallToolResult, TextContent

    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(answer, indent=2))],
        structured_content=answer,
        is_error=not answer.get("success", False),
    )


def _as_mcp_tool(spec: tools.ToolSpec, context_class: type) -> Callable[..., Any]:
    """The tool function for the SDK: the tool's own parameters (and a Context for one that
    reports progress), answering with a CallToolResult whose is_error mirrors 'success' and
    whose structured content is declared by ``spec.result`` (the tool's outputSchema)."""
    from mcp.types import CallToolResult

    params = [p for name, p in inspect.signature(spec.fn, eval_str=True).parameters.items()
              if name not in tools.HIDDEN]  # fmt: skip
    progress = spec.reports_progress
    if progress:
        params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY,
                                        annotation=context_class))  # fmt: skip

    async def call(**kwargs: Any) -> Any:
        ctx = kwargs.pop("ctx", None)
        if ctx is not None:
            kwargs["report"] = ctx.report_progress
        return _as_result(await spec.fn(**kwargs))

    returns = Annotated[CallToolResult, spec.result]
    call.__name__ = call.__qualname__ = spec.name
    call.__doc__ = spec.fn.__doc__
    call.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    return call


def _annotations(spec: tools.ToolSpec) -> Any:
    from mcp.types import ToolAnnotations

    return ToolAnnotations(
        title=spec.title,
        read_only_hint=spec.read_only,
        destructive_hint=spec.destructive,
        idempotent_hint=spec.read_only,
        open_world_hint=not spec.read_only,
    )


def _configure_logging(debug: bool) -> None:
    """Logs to stderr only: stdout is the protocol."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


async def cancel_running() -> None:
    """Cancel every session this process runs (the server is going away)."""
    for manager in registry.managers():
        for session in manager.get_active_sessions():
            await manager.cancel_sync_session(session.session_id)


def check_sdk() -> None:
    """Raise ConfigurationError now when the SDK is missing (before an emulator starts)."""
    _import_sdk()


def serve_stdio(connection: Connection, *, debug: bool = False) -> None:
    """Serve the tools over stdio on ``connection`` until the client disconnects, or SIGINT /
    SIGTERM arrives: either way running sessions are cancelled cleanly on the way out."""
    _configure_logging(debug)
    log.info("serving %s", connection.summary_line())
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        build_server(connection).run("stdio")
    except KeyboardInterrupt:
        pass  # the lifespan has cancelled the running sessions
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_loopback(host: str) -> bool:
    """True for a loopback address or ``localhost`` (the only binds served without a token)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def http_token(host: str) -> str | None:
    """The bearer token the HTTP server requires: ``D365SYNC_MCP_TOKEN`` when set; else, for a
    bind that is not loopback, a new random one (the caller prints it once); else none."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(32)


class BearerToken:
    """ASGI middleware: every request must carry ``Authorization: Bearer <token>`` (compared in
    constant time); others get 401 before reaching the MCP transport."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = json.dumps({"error": "unauthorized: send Authorization: Bearer <token> "
                                   f"(the token printed at start, or ${TOKEN_VARIABLE})"}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="d365sync"'),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)  # fmt: skip


def serve_http(
    connection: Connection,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_HTTP_PORT,
    debug: bool = False,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the tools over the SDK's Streamable HTTP transport at ``http://host:port/mcp``
    until SIGINT / SIGTERM. A bind that is not loopback requires a bearer token
    (:func:`http_token`); ``announce`` gets the URL (and a generated token) once."""
    import anyio
    import uvicorn

    _configure_logging(debug)
    token = http_token(host)
    server = build_server(connection)
    app: Any = server.streamable_http_app(host=host)
    if token is not None:
        app = BearerToken(app, token)
    say = announce or (lambda line: print(line, file=sys.stderr, flush=True))
    config = uvicorn.Config(app, host=host, port=port, log_level="debug" if debug else "warning",
                            lifespan="on")  # fmt: skip
    web = uvicorn.Server(config)

    async def run() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(web.serve)
            while not web.started:
                if web.should_exit:
                    return
                await anyio.sleep(0.05)
            bound = web.servers[0].sockets[0].getsockname()[1] if web.servers else port
            say(f"d365sync MCP server (Streamable HTTP) on http://{_url_host(host)}:{bound}/mcp")
            if token is not None and not os.environ.get(TOKEN_VARIABLE, "").strip():
                say(f"Bearer token (shown once; set {TOKEN_VARIABLE} to choose one): {token}")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        anyio.run(run)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM ends the server the way Ctrl-C does: it becomes a SIGINT, which the event loop
    turns into a cancel at a safe point (the lifespan's clean-up runs)."""
    signal.raise_signal(signal.SIGINT)
