"""Serve the assistant tools over MCP (stdio), with the official ``mcp`` SDK (version 2): the
five sync tools (:mod:`d365sync_nb.tools`) and the three metadata tools
(:mod:`d365sync_nb.metadata_tools`).

``d365sync mcp [--profile NAME | --base-url URL | --demo]`` connects, then calls
:func:`serve_stdio` with that :class:`~d365sync_nb.connection.Connection`: it is the tools'
default connection while the server runs. stdout carries the protocol; logs go to stderr.
Sync sessions run as asyncio tasks on the server's event loop, so a session started by one
tool call keeps running between calls; when the client goes away they are cancelled.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from d365sync_nb import automation_tools, metadata_tools, tools
from d365sync_nb.connection import Connection, registry
from d365sync_nb.errors import ConfigurationError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

log = logging.getLogger(__name__)

SERVER_NAME = "d365sync"
INSTRUCTIONS = (
    "Tools to sync Dynamics 365 Finance & Operations metadata into a local cache. "
    "d365fo_start_sync starts a background session and returns its session_id; poll "
    "d365fo_get_sync_progress with that id until summary.is_running is false; "
    "d365fo_cancel_sync stops it; once it has finished, the progress answer's 'diagnosis' says "
    "in one sentence why it was slow or failed. d365fo_list_sync_sessions shows what runs now "
    "and d365fo_get_sync_history what ran before (filter by status, strategy, global version id or "
    "start time). Once a sync has completed, the cached metadata answers questions without the "
    "service: d365fo_search_metadata finds entities, fields and enumerations by name or label; "
    "d365fo_describe_entity gives an entity's fields, keys, labels and relations; "
    "d365fo_diff_versions says what changed between two synced versions (e.g. after an "
    "upgrade); d365fo_check_version says, with 3 cheap requests, whether the environment "
    "moved to a new version and a sync is due. Every answer has 'success'; when it is false, "
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
    """An MCP server exposing the tools (:data:`SERVED`) on ``connection``.

    ``connection`` is the tools' default connection while the server runs; on shutdown,
    sessions still running are cancelled and connections opened per profile are closed.
    """
    mcpserver = _import_sdk()

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[dict[str, Any]]:
        registry.set_default(connection)
        try:
            yield {}
        finally:
            await cancel_running()
            registry.set_default(None)
            registry.close_opened()

    from d365sync_nb import __version__

    server = _server_class(mcpserver)(
        SERVER_NAME,
        title="D365 F&O metadata sync",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
    )
    for spec in SERVED:
        server.add_tool(
            _as_mcp_tool(spec),
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=_annotations(spec),
        )
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


def _as_mcp_tool(spec: tools.ToolSpec) -> Any:
    """The tool function, answering with a CallToolResult whose is_error mirrors 'success'."""

    @functools.wraps(spec.fn)
    async def call(**kwargs: Any) -> Any:
        return _as_result(await spec.fn(**kwargs))

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


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM ends the server the way Ctrl-C does: it becomes a SIGINT, which the event loop
    turns into a cancel at a safe point (the lifespan's clean-up runs)."""
    signal.raise_signal(signal.SIGINT)
