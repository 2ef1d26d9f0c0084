"""Serve the five sync tools over MCP (stdio), with the official ``mcp`` SDK (version 2).

``d365sync mcp [--profile NAME | --base-url URL | --demo]`` calls :func:`serve_stdio`. stdout
carries the protocol; logs go to stderr. Sync sessions run as asyncio tasks on the server's
event loop, so a session started by one tool call keeps running between calls.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from d365sync_nb import tools
from d365sync_nb.cli import connect_from_args
from d365sync_nb.connection import Connection
from d365sync_nb.errors import ConfigurationError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

log = logging.getLogger(__name__)

SERVER_NAME = "d365sync"
INSTRUCTIONS = (
    "Tools to sync Dynamics 365 Finance & Operations metadata into a local cache. "
    "d365fo_start_sync starts a background session and returns its session_id; poll "
    "d365fo_get_sync_progress with that id until summary.is_running is false; "
    "d365fo_cancel_sync stops it. d365fo_list_sync_sessions shows what runs now and "
    "d365fo_get_sync_history what ran before. Every answer has 'success'; when it is false, "
    "'error' says what went wrong and what to do."
)
MISSING_SDK = "The MCP server needs the 'mcp' package (version 2): pip install 'd365sync_nb[mcp]'"


def _import_sdk() -> Any:
    try:
        from mcp.server import mcpserver
    except ImportError:
        raise ConfigurationError(MISSING_SDK) from None
    return mcpserver


def build_server(connection: Connection | None = None) -> MCPServer:
    """An MCP server exposing :data:`d365sync_nb.tools.TOOLS`.

    ``connection`` (optional) becomes the tools' default connection while the server runs;
    on shutdown, sessions still running are cancelled and per-profile connections closed.
    """
    mcpserver = _import_sdk()

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[dict[str, Any]]:
        if connection is not None:
            tools.set_default_connection(connection)
        try:
            yield {}
        finally:
            for conn in tools.open_connections():
                for session in conn.manager.get_active_sessions():
                    await conn.manager.cancel_sync_session(session.session_id)
            tools.set_default_connection(None)
            tools.close_connections()

    from d365sync_nb import __version__

    server = mcpserver.MCPServer(
        SERVER_NAME,
        title="D365 F&O metadata sync",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
    )
    for spec in tools.TOOLS:
        server.add_tool(
            _as_mcp_tool(spec),
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=_annotations(spec),
        )
    return server


def _as_mcp_tool(spec: tools.ToolSpec) -> Any:
    """The tool function, answering with a CallToolResult whose is_error mirrors 'success'."""
    from mcp.types import CallToolResult, TextContent

    @functools.wraps(spec.fn)
    async def call(**kwargs: Any) -> Any:
        answer = await spec.fn(**kwargs)
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(answer, indent=2))],
            structured_content=answer,
            is_error=not answer.get("success", False),
        )

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


def _connection(args: argparse.Namespace) -> Connection | None:
    """The connection the options name; None when none does (tools then resolve per call)."""
    tools.set_connection_options(
        cache_dir=getattr(args, "cache_dir", None), concurrency=getattr(args, "concurrency", None)
    )
    if not (args.demo or args.profile or args.base_url):
        return None
    return connect_from_args(args)


def serve_stdio(args: argparse.Namespace) -> None:
    """Serve the tools over stdio until the client disconnects."""
    _configure_logging(getattr(args, "debug", False))
    _import_sdk()  # a missing SDK fails before an emulator starts
    connection = _connection(args)
    if connection is not None:
        log.info("serving %s", connection.describe())
    try:
        build_server(connection).run("stdio")
    finally:
        if connection is not None:
            connection.close()
