"""The ASGI application: FastAPI, MCP and Socket.IO on one port, with a lifespan that owns the resources.

Wiring only. What comes up in which order lives in `ragserver.runtime.Runtime`; routes live in `api/`,
the MCP tools in `mcp/`, the web page's files in `web/`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import socketio
from fastapi import FastAPI, Security
from fastapi.security import HTTPBearer

from ragserver import __version__
from ragserver.api import (
    API_ROUTERS,
    HEALTH_ROUTER,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    build_socketio,
    error_responses,
    install_error_handlers,
    listen_to_other_replicas,
    stop_socketio,
)
from ragserver.config import Settings, get_settings
from ragserver.logredact import secrets_masked_in_logs
from ragserver.mcp import MCP_PATH, build_mcp_endpoint
from ragserver.runtime import Runtime
from ragserver.web import web_routes

log = logging.getLogger(__name__)

# Errors any /api route can answer (guards, body parsing, validation, dependencies); routes add their own.
API_ERRORS = error_responses(400, 401, 413, 422, 500, 503)
# Documents the key in OpenAPI (and /docs' Authorize button); ApiKeyMiddleware is what enforces it.
BEARER = HTTPBearer(auto_error=False, description="RAGSERVER_API_KEY")
# Room for the multipart envelope and form fields around an upload of MAX_UPLOAD_MB.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> socketio.ASGIApp:
    """FastAPI wrapped by the Socket.IO ASGI app; `.other_asgi_app` is the FastAPI instance.

    The lifespan starts and stops `runtime` (built from `settings` when not given): `ragserver
    serve` passes its own to watch `runtime.failed`.
    """
    runtime = runtime or Runtime(settings or get_settings())
    settings = runtime.settings
    mcp = build_mcp_endpoint(runtime)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with secrets_masked_in_logs(settings):
            await runtime.start()
            listen_to_other_replicas(sio)
            try:
                async with mcp.running():
                    yield
            finally:
                await runtime.stop()
                await stop_socketio(sio)

    api = FastAPI(
        title="ragserver",
        version=__version__,
        summary="Self-hosted knowledge server: crawl, ingest, hybrid search, reranking.",
        lifespan=lifespan,
    )
    api.state.runtime = runtime
    install_error_handlers(api)
    api.include_router(HEALTH_ROUTER)
    key_docs = [Security(BEARER)] if settings.ragserver_api_key else []
    for router in API_ROUTERS:
        api.include_router(router, responses=API_ERRORS, dependencies=key_docs)
    api.router.routes.extend(mcp.routes)
    api.router.routes.extend(web_routes())
    api.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_mb * 1024 * 1024 + MULTIPART_OVERHEAD_BYTES)
    api.add_middleware(ApiKeyMiddleware, api_key=settings.ragserver_api_key, prefixes=("/api", MCP_PATH))
    sio = build_socketio(runtime.tracker, settings.ragserver_api_key, settings.redis_url)
    return socketio.ASGIApp(sio, other_asgi_app=api, socketio_path="socket.io")
