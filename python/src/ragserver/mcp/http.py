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
from starlette.routing import BaseRoute, Route

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
        ready = asyncio.ensure_future(started.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
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
    # "/mcp/" as well: the app's slash redirect would name an http:// URL behind a TLS proxy
    routes = [route for endpoint in app.routes if isinstance(endpoint, Route) for route in _with_slash(endpoint)]
    return McpEndpoint(server=server, routes=routes)


def _with_slash(route: Route) -> list[BaseRoute]:
    return [route, Route(route.path + "/", endpoint=route.endpoint, methods=route.methods)]


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection on, with the configured hosts and origins.

    `name:*` (any port) also allows the bare name: a reverse proxy or port 80/443 sends no port.
    """
    hosts = _with_bare_names(_listed(settings.mcp_allowed_hosts))
    origins = _listed(settings.mcp_allowed_origins) or [
        f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")
    ]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def _with_bare_names(hosts: list[str]) -> list[str]:
    bare = [host.removesuffix(":*") for host in hosts if host.endswith(":*")]
    return list(dict.fromkeys(hosts + bare))


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
