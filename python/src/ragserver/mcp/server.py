"""The MCP server of one process: its tools over the runtime's services, and MCP_READ_ONLY.

Under MCP_READ_ONLY the tools that change something are not registered, so `tools/list` never
offers them; a client that calls one anyway (a name remembered from another server) gets a tool
error that says why, from a middleware in front of the tool lookup.
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, TextContent

from ragserver import __version__
from ragserver.mcp.knowledge_tools import register_knowledge_tools
from ragserver.mcp.operation_tools import WRITE_TOOLS, register_operation_tools
from ragserver.runtime import Runtime

INSTRUCTIONS = """\
ragserver is a knowledge base of documentation (crawled sites, uploaded files) for coding work.
Look things up before answering from memory: rag_get_available_sources shows what is covered;
rag_search_knowledge_base finds passages and pages (cite their url and title);
rag_read_full_page reads a page whole; rag_search_code_examples finds code.
"""


class ReadOnlyRefusal:
    """Answers a call of a hidden write tool with a tool error naming MCP_READ_ONLY."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        name = ctx.params.get("name") if ctx.method == "tools/call" and ctx.params else None
        if name in WRITE_TOOLS:
            message = f"{name} changes the knowledge base, and this server is read-only (MCP_READ_ONLY=true)."
            return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
        return await call_next(ctx)


def build_mcp_server(runtime: Runtime) -> MCPServer:
    """The tools of this process's runtime (MCP_READ_ONLY read from its settings)."""
    read_only = runtime.settings.mcp_read_only
    server = MCPServer(
        name="ragserver",
        version=__version__,
        instructions=INSTRUCTIONS,
        middleware=[ReadOnlyRefusal()] if read_only else None,
    )
    register_knowledge_tools(server, runtime)
    register_operation_tools(server, runtime, read_only=read_only)
    return server
