"""`ragserver mcp`: MCP over stdio for clients that spawn a command, bridged to a running server.

The tools run in the server process (`RAGSERVER_URL`), so the database keeps one owner and the
models load once; this process only relays `tools/list` and `tools/call` to the server's /mcp with
the API key. Each relayed request opens its own short HTTP session: a bridge that sat idle for
hours, or a server that restarted meanwhile, still answers the next call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
)

from ragserver import __version__
from ragserver.mcp.http import MCP_PATH
from ragserver.mcp.server import INSTRUCTIONS

CONNECT_TIMEOUT_S = 10.0
# A search may wait for a loading reranker (RERANK_LOAD_WAIT_S) and then rerank within its budget.
CALL_TIMEOUT_S = 300.0


class StdioBridge:
    """Relays one stdio client's tool requests to the server at `base_url`."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.endpoint = base_url.rstrip("/") + MCP_PATH
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @contextlib.asynccontextmanager
    async def _remote(self, refusals: list[int]) -> AsyncIterator[Client]:
        """A session with the server; HTTP refusals (401, 421, ...) are noted in `refusals`, which the SDK hides."""

        async def note_refusal(response: httpx2.Response) -> None:
            if response.status_code >= 400:
                refusals.append(response.status_code)

        timeout = httpx2.Timeout(CALL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        async with (
            httpx2.AsyncClient(headers=self.headers, timeout=timeout, event_hooks={"response": [note_refusal]}) as http,
            Client(streamable_http_client(self.endpoint, http_client=http)) as remote,
        ):
            yield remote

    async def list_tools(self, _: ServerRequestContext[Any], params: PaginatedRequestParams | None) -> ListToolsResult:
        refusals: list[int] = []
        try:
            async with self._remote(refusals) as remote:
                return await remote.list_tools(cursor=params.cursor if params else None)
        except Exception as exc:  # an error answer the client shows, instead of "Internal server error"
            raise MCPError(INTERNAL_ERROR, self.failure(exc, refusals)) from exc

    async def call_tool(self, _: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
        refusals: list[int] = []
        try:
            async with self._remote(refusals) as remote:
                return await remote.call_tool(params.name, params.arguments or {})
        except Exception as exc:  # the server is down or refused us: a tool error the model can relay
            return CallToolResult(content=[TextContent(type="text", text=self.failure(exc, refusals))], is_error=True)

    def failure(self, exc: BaseException, refusals: list[int]) -> str:
        """Why a relayed call failed, in words a user can act on."""
        if 401 in refusals:
            return f"ragserver at {self.endpoint} refused the API key (HTTP 401): set RAGSERVER_API_KEY to its key."
        if refusals:
            return f"ragserver at {self.endpoint} refused the request (HTTP {refusals[-1]})."
        cause = innermost(exc)
        return f"ragserver at {self.endpoint} did not answer ({type(cause).__name__}: {cause}); is it running?"

    async def serve(self) -> None:
        """Answer MCP on stdin/stdout until the client closes them."""
        server: Server[Any] = Server(
            "ragserver",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())


def innermost(exc: BaseException) -> BaseException:
    """The error inside the task groups the SDK's transports wrap it in (one per nested group)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
