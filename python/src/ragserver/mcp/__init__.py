"""The MCP face: the knowledge base as tools for coding assistants.

Streamable HTTP at /mcp in the server process (`http`), and `ragserver mcp`, a stdio bridge to a
running server (`stdio`). Tools call the same services as the HTTP API.
"""

from ragserver.mcp.http import MCP_PATH, McpEndpoint, build_mcp_endpoint

__all__ = ["MCP_PATH", "McpEndpoint", "build_mcp_endpoint"]
