"""/mcp as a client reaches it: the bearer key, DNS-rebinding protection, MCP_READ_ONLY, and
`ragserver mcp` (stdio) bridging to the running server, all with the SDK's own client."""

from __future__ import annotations

import os
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from support.api_fixtures import API_KEY, free_port, live_server
from support.mcp_client import call, call_error, http_session, stdio_session
from support.mcp_fixtures import READ_TOOLS, WRITE_TOOLS, Knowledge, mcp_settings, uploaded

from ragserver.config import Settings

pytestmark = pytest.mark.timeout(300)

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def post_initialize(base_url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await client.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", f"Basic {API_KEY}"])
async def test_mcp_without_the_key_is_401(knowledge: Knowledge, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    reply = await post_initialize(knowledge.server.base_url, **headers)
    assert reply.status_code == 401, reply.text
    assert reply.json()["success"] is False and reply.json()["error"] == "unauthorized"


async def test_the_sdk_client_without_the_key_is_refused_with_401(knowledge: Knowledge) -> None:
    statuses: list[int] = []

    async def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    http = httpx2.AsyncClient(event_hooks={"response": [record]})
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises its own error types for a refused handshake
        async with http, Client(streamable_http_client(f"{knowledge.server.base_url}/mcp", http_client=http)) as client:
            await client.list_tools()
    assert statuses and set(statuses) == {401}


@pytest.mark.parametrize("path", ["/mcp", "/mcp/"])
async def test_the_key_opens_mcp_with_or_without_the_slash(knowledge: Knowledge, path: str) -> None:
    async with httpx.AsyncClient(base_url=knowledge.server.base_url, timeout=30) as client:
        refused = await client.post(path, json=INITIALIZE, headers=MCP_HEADERS)
        opened = await client.post(path, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {API_KEY}"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert opened.status_code == 200, opened.text


@pytest.mark.parametrize("host", ["localhost", "localhost:8181", "ragserver:8181", "server"])
async def test_localhost_and_the_compose_names_pass_the_host_check(knowledge: Knowledge, host: str) -> None:
    reply = await post_initialize(knowledge.server.base_url, Authorization=f"Bearer {API_KEY}", Host=host)
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [("Host", "evil.example:8181", 421), ("Origin", "http://evil.example", 403)],
)
async def test_dns_rebinding_is_refused(knowledge: Knowledge, header: str, value: str, status: int) -> None:
    reply = await post_initialize(knowledge.server.base_url, Authorization=f"Bearer {API_KEY}", **{header: value})
    assert reply.status_code == status, reply.text


async def test_allowed_hosts_and_origins_are_configurable(api_settings: Settings) -> None:
    settings = mcp_settings(
        api_settings, mcp_allowed_hosts="docs.internal:*", mcp_allowed_origins="https://ide.internal"
    )
    async with live_server(settings) as server:
        key = f"Bearer {API_KEY}"
        assert (await post_initialize(server.base_url, Authorization=key, Host="docs.internal:1")).status_code == 200
        assert (await post_initialize(server.base_url, Authorization=key)).status_code == 421  # 127.0.0.1 not listed
        allowed = await post_initialize(
            server.base_url, Authorization=key, Host="docs.internal:1", Origin="https://ide.internal"
        )
        assert allowed.status_code == 200
        refused = await post_initialize(
            server.base_url, Authorization=key, Host="docs.internal:1", Origin="http://docs.internal:1"
        )
        assert refused.status_code == 403


async def test_read_only_hides_and_refuses_the_tools_that_change_things(api_settings: Settings) -> None:
    async with live_server(mcp_settings(api_settings, mcp_read_only=True)) as server:
        knowledge = await uploaded(server)
        async with http_session(server.base_url, API_KEY) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert names == READ_TOOLS
            for tool in sorted(WRITE_TOOLS):
                message = await call_error(client, tool, {"url": "https://example.org", "progress_id": "x"})
                assert "MCP_READ_ONLY" in message, message
            answer = await call(client, "rag_search_knowledge_base", {"query": "zebra migration", "match_count": 10})
            assert knowledge.release in {hit["source_id"] for hit in answer["results"]}


def bridge_env(base_url: str, api_key: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "RAGSERVER_URL": base_url, "RAGSERVER_API_KEY": api_key}


async def test_stdio_bridge_lists_and_calls_the_servers_tools(knowledge: Knowledge) -> None:
    async with knowledge.session() as mcp, stdio_session(bridge_env(knowledge.server.base_url, API_KEY)) as bridged:
        assert {tool.name for tool in (await bridged.list_tools()).tools} == READ_TOOLS | WRITE_TOOLS
        args: dict[str, Any] = {"query": "zebra migration tool", "match_count": 10, "return_mode": "chunks"}
        through_stdio = await call(bridged, "rag_search_knowledge_base", args)
        direct = await call(mcp, "rag_search_knowledge_base", args)
        assert [hit["id"] for hit in through_stdio["results"]] == [hit["id"] for hit in direct["results"]]
        assert knowledge.release in {hit["source_id"] for hit in through_stdio["results"]}
        message = await call_error(bridged, "rag_read_full_page", {"page_id": 987654321})
        assert "987654321" in message


async def test_stdio_bridge_reports_a_wrong_key_and_a_server_that_is_down(knowledge: Knowledge) -> None:
    async with stdio_session(bridge_env(knowledge.server.base_url, "wrong-key")) as bridged:
        message = await call_error(bridged, "rag_get_available_sources")
        assert "HTTP 401" in message and "RAGSERVER_API_KEY" in message, message
        with pytest.raises(MCPError, match="HTTP 401"):
            await bridged.list_tools()
    async with stdio_session(bridge_env(f"http://127.0.0.1:{free_port()}", API_KEY)) as bridged:
        message = await call_error(bridged, "rag_get_available_sources")
        assert "is it running" in message, message
        with pytest.raises(MCPError, match="is it running"):
            await bridged.list_tools()
