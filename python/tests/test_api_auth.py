"""RAGSERVER_API_KEY: every /api and /mcp route refuses requests without the bearer key; /health and docs stay open."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts
from support.api_fixtures import API_KEY, RunningApp

pytestmark = pytest.mark.slow

OPEN_PATHS = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
MCP_PATHS = {"/mcp", "/mcp/"}  # the MCP face, under the same key (its 401s: test_mcp_transport.py)
WEB_PATHS = {"/", "/assets"}  # the web page: it has to load before it can ask for the key (test_web_static.py)


def api_routes(running: RunningApp) -> list[tuple[str, str]]:
    """(method, concrete path) of every route of the app, path parameters filled with a dummy."""
    routes = []
    for route in iter_route_contexts(running.app.other_asgi_app.routes):
        path = re.sub(r"\{[^}]+\}", "some-id", route.path)
        routes.extend((method, path) for method in sorted((route.methods or {"GET"}) - {"HEAD"}))
    return routes


def test_every_route_is_either_open_or_under_api_or_mcp(api_with_key: RunningApp) -> None:
    """A new route outside /api and /mcp would silently escape the key check; this catches it."""
    for _, path in api_routes(api_with_key):
        assert path in OPEN_PATHS | MCP_PATHS | WEB_PATHS or path.startswith("/api/"), path


async def test_every_api_route_requires_the_key(api_with_key: RunningApp) -> None:
    protected = [(m, p) for m, p in api_routes(api_with_key) if p.startswith("/api/")]
    assert len(protected) >= 12, protected
    for method, path in protected:
        for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": API_KEY}):
            response = await api_with_key.client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"


async def test_the_right_key_is_accepted(api_with_key: RunningApp) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    response = await api_with_key.client.get("/api/progress/", headers=headers)
    assert response.status_code == 200, response.text
    response = await api_with_key.client.get("/api/rag/sources", headers=headers)
    assert response.status_code == 200, response.text


async def test_health_and_docs_need_no_key(api_with_key: RunningApp) -> None:
    for path in ("/health", "/openapi.json", "/docs"):
        response = await api_with_key.client.get(path)
        assert response.status_code == 200, (path, response.text)
