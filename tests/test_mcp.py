"""The MCP server over stdio, driven by the SDK's own client (a real subprocess, --demo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the [mcp] extra is not installed")

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import CallToolResult

from d365sync_nb import connect
from d365sync_nb.emulator import build_dataset
from d365sync_nb.models import SyncStatus, SyncStrategy
from tests.support import apoll

SYNC_TOOLS = {
    "d365fo_start_sync",
    "d365fo_wait_sync",
    "d365fo_get_sync_progress",
    "d365fo_cancel_sync",
    "d365fo_list_sync_sessions",
    "d365fo_get_sync_history",
}
METADATA_TOOLS = {"d365fo_search_metadata", "d365fo_describe_entity", "d365fo_diff_versions"}
AUTOMATION_TOOLS = {"d365fo_check_version"}
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def server_command(cache_dir: Path, latency_ms: int = 30) -> list[str]:
    return [
        "-m", "d365sync_nb", "mcp", "--demo", "--cache-dir", str(cache_dir),
        "--latency-ms", str(latency_ms),
    ]  # fmt: skip


def demo_server(cache_dir: Path, latency_ms: int = 30) -> Client:
    params = StdioServerParameters(
        command=sys.executable,
        args=server_command(cache_dir, latency_ms),
        env={"D365SYNC_PROFILES": str(cache_dir / "no-profiles.toml")},
    )
    return Client(params, read_timeout_seconds=30)


async def call(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    return await client.call_tool(tool, arguments)


def data(result: CallToolResult) -> dict[str, Any]:
    """The structured answer; the text content carries the same JSON."""
    assert result.structured_content is not None, result
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def progress(client: Client, session_id: str) -> dict[str, Any]:
    result = await call(client, "d365fo_get_sync_progress", session_id=session_id)
    assert not result.is_error, result
    return data(result)


async def test_tools_schemas_and_bad_arguments(tmp_path: Path) -> None:
    async with demo_server(tmp_path) as client:
        assert "d365fo_start_sync" in (client.instructions or "")
        listed = (await client.list_tools()).tools
        tools = {t.name: t for t in listed}
        assert set(tools) == SYNC_TOOLS | METADATA_TOOLS | AUTOMATION_TOOLS
        assert "d365fo_describe_entity" in (client.instructions or "")
        for name in METADATA_TOOLS:
            assert tools[name].annotations.read_only_hint is True
        for tool in listed:
            assert tool.description and len(tool.description) > 60
            assert tool.input_schema["type"] == "object"
            profile = tool.input_schema["properties"]["profile"]
            assert "profile" in profile["description"] and profile["default"] is None

        strategy = tools["d365fo_start_sync"].input_schema["properties"]["strategy"]
        assert strategy["enum"] == [s.value for s in SyncStrategy]
        assert strategy["default"] == "full_without_labels"
        assert "label" in strategy["description"]
        version = tools["d365fo_start_sync"].input_schema["properties"]["global_version_id"]
        assert "detect" in version["description"]
        for name in ("d365fo_get_sync_progress", "d365fo_cancel_sync", "d365fo_wait_sync"):
            schema = tools[name].input_schema
            assert schema["required"] == ["session_id"]
            assert "UUID" in schema["properties"]["session_id"]["description"]
        limit = tools["d365fo_get_sync_history"].input_schema["properties"]["limit"]
        assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == (
            "integer", 1, 100, 20,
        )  # fmt: skip
        history = tools["d365fo_get_sync_history"].input_schema["properties"]
        assert set(history) == {
            "limit", "profile", "status", "strategy", "since", "until", "global_version_id"
        }  # fmt: skip
        assert "required" not in tools["d365fo_get_sync_history"].input_schema
        for name, values in (
            ("status", [s.value for s in SyncStatus]),
            ("strategy", [s.value for s in SyncStrategy]),
        ):
            assert history[name]["anyOf"] == [
                {"type": "string", "enum": values},
                {"type": "null"},
            ]
            assert (
                history[name]["default"] is None and "only sessions" in history[name]["description"]
            )
        for name in ("since", "until"):
            assert "2026-11-30" in history[name]["description"]
            assert history[name]["default"] is None
        assert "started at or after" in history["since"]["description"]
        assert "exclusive" in history["until"]["description"]
        version_filter = history["global_version_id"]
        assert {"type": "integer"} in version_filter["anyOf"]
        assert "global version" in version_filter["description"]
        assert "diagnosis" in tools["d365fo_get_sync_progress"].description
        assert tools["d365fo_get_sync_progress"].annotations.read_only_hint is True
        assert tools["d365fo_cancel_sync"].annotations.destructive_hint is True

        bad = await call(client, "d365fo_start_sync", strategy="everything")
        assert bad.is_error
        assert "Unknown strategy 'everything'; choose one of: full," in data(bad)["error"]
        assert data(bad)["tool"] == "d365fo_start_sync"

        for tool in ("d365fo_get_sync_progress", "d365fo_cancel_sync"):
            unknown = await call(client, tool, session_id=UNKNOWN_ID)
            assert unknown.is_error
            assert f"No sync session with id '{UNKNOWN_ID}'" in data(unknown)["error"]
        malformed = await call(client, "d365fo_get_sync_progress", session_id="last one")
        assert malformed.is_error and "UUID" in data(malformed)["error"]
        missing = await call(client, "d365fo_cancel_sync")
        assert missing.is_error and "session_id" in missing.content[0].text
        assert "Field required" in missing.content[0].text

        for limit_value, used in ((0, 1), (1000, 100)):
            clamped = await call(client, "d365fo_get_sync_history", limit=limit_value)
            assert not clamped.is_error
            assert data(clamped)["limit"] == used
            assert data(clamped)["notice"] == (
                f"limit {limit_value} is outside 1..100; used {used} instead"
            )
        not_int = await call(client, "d365fo_get_sync_history", limit="lots")
        assert not_int.is_error and "limit" in not_int.content[0].text
        assert "valid integer" in not_int.content[0].text

        profile = await call(client, "d365fo_list_sync_sessions", profile="prod")
        assert profile.is_error and "Unknown profile 'prod'" in data(profile)["error"]

        bad_status = await call(client, "d365fo_get_sync_history", status="done")
        assert bad_status.is_error
        assert data(bad_status)["error"].startswith("Unknown status 'done'; one of: running,")
        bad_since = await call(client, "d365fo_get_sync_history", since="last week")
        assert bad_since.is_error and "since must be a date or time" in data(bad_since)["error"]
        bad_version = await call(client, "d365fo_get_sync_history", global_version_id="one")
        assert bad_version.is_error and "valid integer" in bad_version.content[0].text

        # argument checks answer like every other failure: success false, one-line error
        for answer in (missing, not_int, bad_version):
            assert data(answer)["success"] is False and "\n" not in data(answer)["error"]
            assert data(answer)["error"].startswith("Bad arguments: ")
        assert data(missing)["error"] == "Bad arguments: session_id: Field required"
        extra = await call(client, "d365fo_start_sync", strategy="full", force=True)
        assert extra.is_error and data(extra)["success"] is False
        assert data(extra)["error"] == (
            "Bad arguments: unknown argument 'force'; d365fo_start_sync takes strategy, "
            "global_version_id, profile, wait_seconds"
        )
        assert data(extra)["tool"] == "d365fo_start_sync"


async def test_sync_progress_cancel_history(tmp_path: Path) -> None:
    expected = build_dataset("small").expected_counts()
    async with demo_server(tmp_path) as client:
        started = data(await call(client, "d365fo_start_sync"))
        assert started["success"] and started["strategy"] == "full_without_labels"
        first = started["session_id"]
        assert first in started["instructions"]
        done = await apoll(
            lambda: progress(client, first), lambda a: not a["summary"]["is_running"]
        )
        assert done["summary"]["status"] == "completed"
        assert done["diagnosis"].startswith("healthy: no throttling")
        assert done["session"]["http"]["requests"] > 0
        counts = done["session"]["counts"]
        for key in ("data_entities", "public_entities", "properties", "actions", "enumerations"):
            assert counts[key] == expected[key], key
        assert counts["labels"] == 0

        again = data(await call(client, "d365fo_start_sync", strategy="full_without_labels"))
        assert again["session_id"] is None and "already up to date" in again["message"]

        # a 'full' sync, followed while it runs between calls, then cancelled mid-flight
        second = data(await call(client, "d365fo_start_sync", strategy="full"))["session_id"]
        assert second
        running = await apoll(
            lambda: progress(client, second),
            lambda a: a["session"]["phases"]["labels"]["items_processed"] > 0,
        )
        assert running["summary"]["is_running"]
        listed = data(await call(client, "d365fo_list_sync_sessions"))
        assert listed["running_count"] == 1
        assert listed["active_sessions"][0]["session_id"] == second

        cancelled = await call(client, "d365fo_cancel_sync", session_id=second)
        assert not cancelled.is_error, cancelled
        assert data(cancelled)["status"] == "cancelled"
        after = await progress(client, second)
        assert after["summary"]["status"] == "cancelled" and not after["summary"]["is_running"]
        assert data(await call(client, "d365fo_list_sync_sessions"))["total_count"] == 0
        twice = await call(client, "d365fo_cancel_sync", session_id=second)
        assert twice.is_error and "nothing to cancel" in data(twice)["error"]

        history = data(await call(client, "d365fo_get_sync_history", limit=10))
        assert [h["session_id"] for h in history["history"]] == [second, first]
        assert history["summary"]["successful_syncs"] == 1
        assert history["summary"]["cancelled_syncs"] == 1
        assert history["summary"]["failed_syncs"] == 0
        assert history["summary"]["average_duration_seconds"] > 0

        # the same history, filtered
        def ids(answer: CallToolResult) -> list[str]:
            assert not answer.is_error, answer
            return [h["session_id"] for h in data(answer)["history"]]

        by_strategy = await call(client, "d365fo_get_sync_history", strategy="full")
        assert ids(by_strategy) == [second]
        assert data(by_strategy)["filters"] == {"strategy": "full"}
        assert data(by_strategy)["summary"]["cancelled_syncs"] == 1
        assert data(by_strategy)["summary"]["successful_syncs"] == 0
        completed = await call(client, "d365fo_get_sync_history", status="completed", limit=5)
        assert ids(completed) == [first]
        version = await call(client, "d365fo_get_sync_history", global_version_id=1)
        assert ids(version) == [second, first]
        later = await call(client, "d365fo_get_sync_history", since="2999-01-01")
        assert ids(later) == [] and data(later)["recorded_count"] == 2
        before = await call(client, "d365fo_get_sync_history", until="2999-01-01T00:00:00Z")
        assert ids(before) == [second, first]


async def test_metadata_tools_over_stdio(tmp_path: Path) -> None:
    dataset = build_dataset("small")
    entity = dataset.public_entities[0]
    async with demo_server(tmp_path, latency_ms=0) as client:
        before = await call(client, "d365fo_search_metadata", text="NoYes")
        assert before.is_error and "start a sync with d365fo_start_sync" in data(before)["error"]
        started = data(await call(client, "d365fo_start_sync", strategy="full"))
        await apoll(
            lambda: progress(client, started["session_id"]),
            lambda a: not a["summary"]["is_running"],
        )
        hits = data(await call(client, "d365fo_search_metadata", text="NoYes", limit=3))
        assert hits["success"] and len(hits["hits"]) <= 3
        assert (hits["hits"][0]["kind"], hits["hits"][0]["name"]) == ("enumeration", "NoYes")
        described = data(
            await call(client, "d365fo_describe_entity", name=entity["EntitySetName"].lower())
        )
        assert described["entity"] == entity["Name"]
        assert [f["name"] for f in described["fields"]] == [p["Name"] for p in entity["Properties"]]
        one_version = await call(client, "d365fo_diff_versions")
        assert one_version.is_error and "needs two synced versions" in data(one_version)["error"]
        typo = await call(client, "d365fo_describe_entity", name=entity["Name"][:-1] + "Q")
        assert typo.is_error and entity["Name"] in data(typo)["error"]  # a close match
        extra = await call(client, "d365fo_diff_versions", since="yesterday")
        assert data(extra)["error"].startswith("Bad arguments: unknown argument 'since'")


def test_stdout_carries_only_protocol_and_server_stops_with_a_running_sync(
    tmp_path: Path,
) -> None:
    """Raw JSON-RPC: every stdout line is a message, logs go to stderr, EOF stops the server."""
    stderr_path = tmp_path / "server.stderr"
    command = server_command(tmp_path, latency_ms=50)
    command.insert(2, "--debug")  # python -m d365sync_nb --debug mcp ...: plenty of logs
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "d365fo_start_sync", "arguments": {"strategy": "full"}},
        },
    ]
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(requests[0]) + "\n")
        proc.stdin.flush()
        init = json.loads(proc.stdout.readline())
        assert init["id"] == 1 and init["result"]["serverInfo"]["name"] == "d365sync"
        for message in requests[1:]:
            proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        assert answer["id"] == 2 and answer["result"]["structuredContent"]["session_id"]
        proc.stdin.close()  # the client goes away while the sync runs
        proc.wait(timeout=20)
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    errors = stderr_path.read_text()
    assert proc.returncode == 0, errors
    for line in rest.splitlines():
        json.loads(line)  # nothing but JSON-RPC on stdout
    assert "DEBUG" in errors and "Traceback" not in errors
    # the server cancelled the sync on its way out (not left 'interrupted' in the history)
    conn = connect(demo=True, cache_dir=tmp_path)
    try:
        [last] = conn.manager.get_session_history(limit=5)
    finally:
        conn.close()
    assert last.session_id == answer["result"]["structuredContent"]["session_id"]
    assert last.status == SyncStatus.CANCELLED


def test_bad_profile_fails_at_startup(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "d365sync_nb", "mcp", "--profile", "prod"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"D365SYNC_PROFILES": str(tmp_path / "none.toml"), "PATH": ""},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Unknown profile 'prod'" in done.stderr


def test_without_the_sdk_the_package_works_and_mcp_says_what_to_install() -> None:
    script = (
        "import sys; sys.modules['mcp'] = None\n"  # as if the [mcp] extra were not installed
        "import d365sync_nb.tools, d365sync_nb.mcp_server\n"
        "from d365sync_nb.cli import main\n"
        "sys.exit(main(['mcp', '--demo']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "pip install 'd365sync_nb[mcp]'" in done.stderr


def test_sigterm_cancels_a_running_sync_cleanly(tmp_path: Path) -> None:
    """SIGTERM (a service manager stopping the server) cancels like Ctrl-C and closing stdin:
    the session is recorded cancelled, not left 'interrupted'."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, *server_command(tmp_path, latency_ms=50)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "d365fo_start_sync", "arguments": {"strategy": "full"}}},
    ]  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for message in messages:
            proc.stdin.write(json.dumps(message) + "\n")
            proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1
        answer = json.loads(proc.stdout.readline())
        session_id = answer["result"]["structuredContent"]["session_id"]
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors
    conn = connect(demo=True, cache_dir=tmp_path)
    try:
        session = conn.manager.get_sync_session(session_id)
    finally:
        conn.close()
    assert session.status == SyncStatus.CANCELLED
