"""The web page's files from the real app under uvicorn on 127.0.0.1, with RAGSERVER_API_KEY set: `/` and
`/assets/...` need no key while /api does, carry the page's headers (no-cache with validators and 304s,
nosniff, the CSP, JavaScript types for .js and .mjs), and nothing outside the page's folder is reachable."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import http.client
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from support.api_fixtures import API_KEY, RunningApp, live_server

from ragserver.config import Settings
from ragserver.web import web_routes
from ragserver.web.files import CONTENT_SECURITY_POLICY, STATIC_DIR

pytestmark = pytest.mark.slow

VENDOR_MANIFEST = STATIC_DIR.parent / "vendor.json"
JAVASCRIPT = "text/javascript; charset=utf-8"


@pytest_asyncio.fixture(scope="module")
async def server(api_settings: Settings) -> AsyncIterator[RunningApp]:
    async with live_server(dataclasses.replace(api_settings, ragserver_api_key=API_KEY)) as running:
        yield running


def assert_page_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["etag"]


def raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (httpx would resolve its dot segments first)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_policy_is_the_contracts() -> None:
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
        "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )


async def test_index_is_served_at_the_root_without_a_key(server: RunningApp) -> None:
    response = await server.client.get("/")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (STATIC_DIR / "index.html").read_bytes()
    assert_page_headers(response)
    assert response.headers["last-modified"]
    head = await server.client.head("/")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == response.headers["etag"]


async def test_api_needs_the_key_while_the_page_does_not(server: RunningApp) -> None:
    refused = await server.client.get("/api/rag/sources")
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    allowed = await server.client.get("/api/rag/sources", headers={"Authorization": f"Bearer {API_KEY}"})
    assert allowed.status_code == 200, allowed.text
    for path in ("/", "/assets/js/main.js", "/assets/css/app.css", "/assets/vendor/socket.io.esm.min.js"):
        response = await server.client.get(path)
        assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/assets/js/main.js", JAVASCRIPT),
        ("/assets/vendor/socket.io.esm.min.js", JAVASCRIPT),
        ("/assets/vendor/markdown-it.esm.min.mjs", JAVASCRIPT),
        ("/assets/css/app.css", "text/css; charset=utf-8"),
        ("/assets/index.html", "text/html; charset=utf-8"),
    ],
)
async def test_assets_have_their_types_and_the_page_headers(server: RunningApp, path: str, content_type: str) -> None:
    response = await server.client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    assert response.content == (STATIC_DIR / path.removeprefix("/assets/")).read_bytes()
    assert_page_headers(response)


@pytest.mark.parametrize("path", ["/", "/assets/js/main.js", "/assets/vendor/markdown-it.esm.min.mjs"])
async def test_revalidation_answers_304_with_the_headers(server: RunningApp, path: str) -> None:
    first = await server.client.get(path)
    assert first.status_code == 200
    for validators in (
        {"If-None-Match": first.headers["etag"]},
        {"If-None-Match": f'"other", {first.headers["etag"]}'},
        {"If-Modified-Since": first.headers["last-modified"]},
    ):
        again = await server.client.get(path, headers=validators)
        assert again.status_code == 304, (validators, again.status_code)
        assert again.content == b""
        assert again.headers["etag"] == first.headers["etag"]
        assert again.headers["cache-control"] == "no-cache"
    changed = await server.client.get(path, headers={"If-None-Match": '"not-this-one"'})
    assert changed.status_code == 200 and changed.content == first.content


async def test_vendor_files_are_the_pinned_ones(server: RunningApp) -> None:
    """What ./run-tests.sh setup (or the image's build) fetched is what vendor.json pins, with its licence."""
    for entry in json.loads(VENDOR_MANIFEST.read_text())["files"]:
        response = await server.client.get(f"/assets/vendor/{entry['serve_as']}")
        assert response.status_code == 200, entry["serve_as"]
        assert hashlib.sha256(response.content).hexdigest() == entry["sha256"]
        licence = await server.client.get(f"/assets/vendor/{entry['package']}.LICENSE")
        assert licence.status_code == 200 and "MIT" in licence.text


@pytest.mark.parametrize("path", ["/assets/nope.js", "/assets/js/", "/assets/js", "/assets", "/assets/"])
async def test_unknown_assets_are_a_json_404(server: RunningApp, path: str) -> None:
    response = await server.client.get(path, follow_redirects=True)  # /assets is redirected to /assets/
    assert response.status_code == 404, (path, response.status_code)
    assert response.json()["success"] is False


async def test_other_faces_keep_their_answers(server: RunningApp) -> None:
    unknown_api = await server.client.get("/api/nope", headers={"Authorization": f"Bearer {API_KEY}"})
    assert unknown_api.status_code == 404
    assert unknown_api.json() == {"success": False, "error": "not_found", "message": "Not Found"}
    unknown = await server.client.get("/nope.html")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert (await server.client.post("/")).status_code == 405
    for path in ("/health", "/docs", "/openapi.json"):
        assert (await server.client.get(path)).status_code == 200, path
    handshake = await server.client.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
    assert handshake.status_code == 200 and handshake.text.startswith("0{"), handshake.text


@pytest.mark.parametrize(
    "path",
    [
        "/assets/../__init__.py",
        "/assets/../../app.py",
        "/assets/js/../../files.py",
        "/assets/..%2f__init__.py",
        "/assets/%2e%2e/%2e%2e/app.py",
        "/assets/%2e%2e%2f%2e%2e%2fapp.py",
        "/assets//etc/passwd",
        "/assets/..\\__init__.py",
    ],
)
async def test_paths_out_of_the_page_folder_are_refused(server: RunningApp, path: str) -> None:
    """Sent raw over a socket: each would name a real file of the package (or the system) if followed."""
    status, body = await asyncio.to_thread(raw_get, server.base_url, path)
    assert status in (400, 404), (path, status)
    assert b"import" not in body and b"root:" not in body, path


@pytest.mark.parametrize("path", ["/", "/assets/js/main.js"])
async def test_a_package_without_its_page_folder_answers_a_json_503_saying_how_to_fix_it(
    tmp_path: Path, path: str
) -> None:
    """The routes the app mounts, over a folder that a broken package build left out."""
    missing = tmp_path / "static"
    app = Starlette(routes=web_routes(missing))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get(path)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["success"] is False and body["error"] == "web_page_missing"
    assert str(missing) in body["message"] and "reinstall" in body["message"]
