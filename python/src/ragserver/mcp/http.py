"""/mcp on the server's own port: the SDK's streamable HTTP transport, guarded like /api.

The SDK's session manager needs a running task group, so `McpEndpoint.running()` is entered in
the app's lifespan. The bearer key is checked by the app's API-key guard (the same key, the
same 401 JSON); DNS-rebinding protection (Host and Origin checks) is the SDK's, with the allowed
values from MCP_ALLOWED_HOSTS / MCP_ALLOWED_ORIGINS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import BaseRoute

from ragserver.config import Settings
from ragserver.mcp.server import build_mcp_server
from ragserver.runtime import Runtime

MCP_PATH = "/mcp"


@dataclass(frozen=True)
class McpEndpoint:
    """The routes to add to the app and the session manager's lifetime."""

    server: MCPServer
    routes: list[BaseRoute]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve MCP sessions until the app stops.

        The session manager's task group lives in a task of its own: an anyio cancel scope must be
        left in the task that entered it, and a lifespan may be entered and left by different tasks
        (a test fixture's set-up and tear-down).
        """
        started, stop = asyncio.Event(), asyncio.Event()

        async def serve() -> None:
            async with self.server.session_manager.run():
                started.set()
                await stop.wait()

        task = asyncio.create_task(serve(), name="ragserver-mcp-sessions")
        await asyncio.wait({task, asyncio.ensure_future(started.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # it failed to start: raise its error
        try:
            yield
        finally:
            stop.set()
            await task


def build_mcp_endpoint(runtime: Runtime) -> McpEndpoint:
    """The MCP server over `runtime`, as streamable HTTP at MCP_PATH."""
    server = build_mcp_server(runtime)
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH, transport_security=transport_security(runtime.settings)
    )
    return McpEndpoint(server=server, routes=list(app.routes))


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection on, with the configured hosts and origins."""
    hosts = _listed(settings.mcp_allowed_hosts)
    origins = _listed(settings.mcp_allowed_origins) or [
        f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")
    ]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
