"""Assistants without polling, through the SDK's own client over stdio and Streamable HTTP:
progress notifications during a wait, resources (listed, read, updated while a sync runs),
prompts, typed results (every structuredContent valid against its outputSchema), the HTTP
bearer token off loopback, and the official MCP Inspector CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the [mcp] extra is not installed")

import httpx2
import jsonschema
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from d365sync_nb.emulator import build_dataset
from tests.test_mcp import demo_server, server_command

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
TEMPLATES = {
    "d365sync://sessions/{session_id}",
    "d365sync://sessions/{session_id}/requests",
    "d365sync://entities/{name}",
}
PROMPTS = {"diagnose_last_sync", "what_changed_in_last_upgrade", "is_my_cache_current"}


class HttpServer:
    """``d365sync mcp --demo --http`` in a subprocess: its URL and (off loopback) its token."""

    def __init__(self, cache_dir: Path, *, host: str = "127.0.0.1", latency_ms: int = 30,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        command = [sys.executable, *server_command(cache_dir, latency_ms),
                   "--http", "--host", host, "--port", "0"]  # fmt: skip
        environ = {k: v for k, v in os.environ.items() if k != "D365SYNC_MCP_TOKEN"}
        environ["D365SYNC_PROFILES"] = str(cache_dir / "no-profiles.toml")
        self.proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env={**environ, **(env or {})})  # fmt: skip
        self.url = ""
        self.token: str | None = None
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if found := re.search(r"on (http://\S+/mcp)", line):
                self.url = found.group(1)
            if found := re.search(r"Bearer token .*: (\S+)$", line):
                self.token = found.group(1)
            if self.url and (self.token or host == "127.0.0.1" or env):
                break
        assert self.url, "the HTTP server did not start"
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.asynccontextmanager
async def connected(transport: str, cache_dir: Path, latency_ms: int = 30
                    ) -> AsyncIterator[Client]:  # fmt: skip
    if transport == "stdio":
        async with demo_server(cache_dir, latency_ms) as client:
            yield client
        return
    server = HttpServer(cache_dir, latency_ms=latency_ms)
    try:
        async with Client(server.url, read_timeout_seconds=30) as client:
            yield client
    finally:
        server.stop()


class Checked:
    """Calls tools and checks every answer against the tool's outputSchema (jsonschema)."""

    def __init__(self, client: Client, schemas: dict[str, dict[str, Any]]) -> None:
        self.client = client
        self.schemas = schemas
        self.validated = 0

    async def call(self, tool: str, progress: Any = None, **arguments: Any) -> dict[str, Any]:
        result: CallToolResult = await self.client.call_tool(
            tool, arguments, progress_callback=progress
        )
        data = result.structured_content
        assert data is not None, result
        assert json.loads(result.content[0].text) == data  # the same JSON as text
        jsonschema.validate(data, self.schemas[tool])  # success and failure alike
        assert result.is_error is (not data["success"])
        self.validated += 1
        return data


def resource_json(result: Any) -> dict[str, Any]:
    [content] = result.contents
    assert content.mime_type == "application/json"
    return json.loads(content.text)


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_wait_progress_resources_prompts_and_typed_results(
    tmp_path: Path, transport: str
) -> None:
    entity = build_dataset("small").public_entities[0]
    async with connected(transport, tmp_path) as client:
        assert "d365fo_wait_sync" in (client.instructions or "")
        assert "polling" in (client.instructions or "")
        listed = (await client.list_tools()).tools
        schemas = {t.name: t.output_schema for t in listed}
        for tool in listed:  # every tool names its properties, success first among them
            schema = tool.output_schema
            assert schema and schema["type"] == "object" and "success" in schema["required"]
            assert {"success", "message", "error"} <= set(schema["properties"])
            jsonschema.Draft202012Validator.check_schema(schema)
        assert {"session_id", "finished", "still_running", "summary", "http", "verdict"} <= set(
            schemas["d365fo_wait_sync"]["properties"]
        )
        checked = Checked(client, schemas)

        # failures are values that validate too
        unknown = await checked.call("d365fo_wait_sync", session_id=UNKNOWN_ID)
        assert unknown["success"] is False and "No sync session" in unknown["error"]
        empty = await checked.call("d365fo_search_metadata", text="customer")
        assert empty["success"] is False and "d365fo_start_sync" in empty["error"]

        templates = {t.uri_template for t in (await client.list_resource_templates())
                     .resource_templates}  # fmt: skip
        assert templates == TEMPLATES
        assert {str(r.uri) for r in (await client.list_resources()).resources} == {
            "d365sync://sessions", "d365sync://versions",
        }  # fmt: skip

        started = await checked.call("d365fo_start_sync", strategy="full")
        sid = started["session_id"]
        uri = f"d365sync://sessions/{sid}"
        running = resource_json(await client.read_resource(uri))
        assert running["summary"]["is_running"] is True and running["session"]["phases"]

        updates: list[str] = []

        async def follow() -> None:
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                async for event in subscription:
                    updates.append(event.uri)

        listener = asyncio.create_task(follow())
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        waited = await checked.call("d365fo_wait_sync", on_progress, session_id=sid,
                                    timeout_seconds=120)  # fmt: skip
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener

        assert waited["success"] and waited["finished"] and not waited["still_running"]
        assert waited["summary"]["status"] == "completed"
        assert waited["verdict"].startswith("healthy") and waited["http"]["requests"] > 0
        assert waited["message"].startswith("Completed in")
        values = [p for p, _, _ in seen]
        assert len(values) >= 3, seen
        assert values == sorted(set(values)), "progress must increase with each notification"
        assert {total for _, total, _ in seen} == {100.0}
        assert any(re.search(r"labels [\d,]+/[\d,]+, ETA \d+ s", m or "") for *_, m in seen), seen
        assert values[-1] == 100.0
        assert updates and set(updates) == {uri}, "subscribed: the running session's updates"

        done = resource_json(await client.read_resource(uri))
        assert done["summary"]["status"] == "completed" and "diagnosis" in done
        sessions = resource_json(await client.read_resource("d365sync://sessions"))
        assert sessions["running"] == [] and sessions["recent"][0]["session_id"] == sid
        log = resource_json(await client.read_resource(f"{uri}/requests"))
        assert log["session_id"] == sid and 0 < len(log["requests"]) <= 200
        assert log["total_count"] == len(log["requests"]) + log["left_out"]
        versions = resource_json(await client.read_resource("d365sync://versions"))
        assert versions["versions"][0]["application_version"]
        described = resource_json(
            await client.read_resource(f"d365sync://entities/{entity['Name']}")
        )
        assert described["entity"] == entity["Name"] and described["fields"]

        # an already finished session: the wait answers at once, with nothing to report
        again: list[float] = []
        finished = await checked.call(
            "d365fo_wait_sync", lambda p, t, m: again.append(p) or asyncio.sleep(0),
            session_id=sid)  # fmt: skip
        assert finished["finished"] and again == []

        # start and wait in one call: "still running" after a short wait, the sync goes on
        short = await checked.call("d365fo_start_sync", strategy="labels_only", wait_seconds=0)
        if short["session_id"] is not None:
            assert short["waited"]["still_running"] is True
            assert "Still running" in short["waited"]["message"]
            rest = await checked.call("d365fo_wait_sync", session_id=short["session_id"],
                                      timeout_seconds=120)  # fmt: skip
            assert rest["finished"]

        for tool, arguments in (
            ("d365fo_get_sync_progress", {"session_id": sid}),
            ("d365fo_list_sync_sessions", {}),
            ("d365fo_get_sync_history", {"limit": 5}),
            ("d365fo_search_metadata", {"text": "NoYes", "limit": 3}),
            ("d365fo_describe_entity", {"name": entity["Name"]}),
            ("d365fo_diff_versions", {}),  # one version only: a failure value
            ("d365fo_cancel_sync", {"session_id": sid}),  # already finished: a failure value
        ):
            await checked.call(tool, **arguments)
        assert checked.validated >= 12

        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert set(prompts) == PROMPTS
        diagnosis = await client.get_prompt("diagnose_last_sync")
        text = diagnosis.messages[0].content.text
        assert "healthy" in text and "ms-dyn-aid" in text and len(text) <= 8000
        upgrade = await client.get_prompt("what_changed_in_last_upgrade")
        assert "two synced versions" in upgrade.messages[0].content.text
        current = await client.get_prompt("is_my_cache_current")
        assert "d365fo_check_version" in current.messages[0].content.text
        assert '"global_version_id": 1' in current.messages[0].content.text


async def test_legacy_clients_subscribe_with_resources_subscribe(tmp_path: Path) -> None:
    """A client on a 2025 protocol (as today's hosts are) subscribes with resources/subscribe
    and gets notifications/resources/updated while the sync runs."""
    from mcp.shared.exceptions import MCPDeprecationWarning
    from mcp.types import ResourceUpdatedNotification

    updated: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))

    params = demo_server(tmp_path).server
    async with Client(params, mode="legacy", message_handler=on_message,
                      read_timeout_seconds=30) as client:  # fmt: skip
        assert client.server_capabilities.resources.subscribe is True
        started = await client.call_tool("d365fo_start_sync", {"strategy": "full"})
        sid = started.structured_content["session_id"]
        with pytest.warns(MCPDeprecationWarning):
            await client.subscribe_resource(f"d365sync://sessions/{sid}")
        waited = await client.call_tool("d365fo_wait_sync", {"session_id": sid,
                                                             "timeout_seconds": 120})
        assert waited.structured_content["finished"]
    assert f"d365sync://sessions/{sid}" in updated


async def test_http_off_loopback_needs_the_bearer_token(tmp_path: Path) -> None:
    server = HttpServer(tmp_path, host="0.0.0.0")
    try:
        assert server.token and len(server.token) >= 32
        url = f"http://127.0.0.1:{server.port}/mcp"
        hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}  # fmt: skip
        accept = {"accept": "application/json, text/event-stream"}
        async with httpx2.AsyncClient() as http:
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": server.token}):
                refused = await http.post(url, json=hello, headers={**accept, **headers})
                assert refused.status_code == 401, refused.text
                assert server.token not in refused.text
        authorized = httpx2.AsyncClient(headers={"authorization": f"Bearer {server.token}"},
                                        timeout=30)  # fmt: skip
        async with authorized, Client(streamable_http_client(url, http_client=authorized)) as c:
            assert {t.name for t in (await c.list_tools()).tools} >= {"d365fo_wait_sync"}
    finally:
        server.stop()


def test_http_token_from_the_environment_is_not_printed(tmp_path: Path) -> None:
    server = HttpServer(tmp_path, host="0.0.0.0", env={"D365SYNC_MCP_TOKEN": "s3cret-token-x"})
    try:
        assert server.token is None  # not echoed
        answer = httpx2.post(f"http://127.0.0.1:{server.port}/mcp", json={},
                             headers={"authorization": "Bearer s3cret-token-x",
                                      "accept": "application/json, text/event-stream"})
        assert answer.status_code != 401
    finally:
        server.stop()


INSPECTOR = "@modelcontextprotocol/inspector"


@pytest.mark.parametrize("method", ["tools/list", "resources/list", "prompts/list"])
def test_official_inspector_cli_lists_tools_resources_prompts(tmp_path: Path, method: str) -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not installed")
    command = [npx, "-y", INSPECTOR, "--cli", sys.executable,
               *server_command(tmp_path, latency_ms=0), "--method", method]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                              env={**os.environ, "npm_config_yes": "true"})  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip("the MCP Inspector could not be fetched in time")
    if done.returncode != 0 and ("npm" in done.stderr and "ERR" in done.stderr):
        pytest.skip(f"the MCP Inspector could not be fetched: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    if method == "tools/list":
        names = {t["name"] for t in answer["tools"]}
        assert {"d365fo_wait_sync", "d365fo_start_sync", "d365fo_diff_versions"} <= names
        assert all(t["outputSchema"]["properties"]["success"] for t in answer["tools"])
        assert "Schema portability" not in done.stderr, done.stderr  # its schema lint is clean
    elif method == "resources/list":
        assert {r["uri"] for r in answer["resources"]} == {
            "d365sync://sessions", "d365sync://versions",
        }  # fmt: skip
    else:
        assert {p["name"] for p in answer["prompts"]} == PROMPTS
