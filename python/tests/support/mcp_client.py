"""The MCP SDK's own client against a running ragserver: over streamable HTTP or `ragserver mcp` (stdio)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent


@contextlib.asynccontextmanager
async def http_session(base_url: str, api_key: str | None = None) -> AsyncIterator[Client]:
    """A client session with the server's /mcp, sending the key as a bearer token."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120, connect=10)) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def stdio_session(env: dict[str, str]) -> AsyncIterator[Client]:
    """A client session with `ragserver mcp` spawned as a child process (the console script)."""
    command = str(Path(sys.executable).parent / "ragserver")
    async with Client(StdioServerParameters(command=command, args=["mcp"], env=env)) as client:
        yield client


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """The structured answer of a tool call that must succeed."""
    result = await client.call_tool(tool, arguments or {})
    assert not result.is_error, f"{tool} failed: {error_text(result)}"
    assert isinstance(result.structured_content, dict), result
    # the text content carries the same JSON, for clients without structured output
    assert json.loads(error_text(result)) == result.structured_content
    return result.structured_content


async def call_error(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> str:
    """The message of a tool call that must fail as a tool error (the session stays usable)."""
    result = await client.call_tool(tool, arguments or {})
    assert result.is_error, f"{tool} should have failed: {result.structured_content}"
    return error_text(result)


def error_text(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))
