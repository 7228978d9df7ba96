"""Small parts of the API on their own: the error handlers, the guards, tag parsing.

The handlers and guards are mounted on a bare FastAPI app with routes written for the test, so
an unexpected exception and a slow, oversized body can be produced on purpose.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from ragserver.api.guards import ApiKeyMiddleware, BodyLimitMiddleware, bearer_token, key_matches
from ragserver.api.handlers import install_error_handlers
from ragserver.api.knowledge import parse_tags
from ragserver.errors import InputError, MLError

SECRET = "s3cr3t-value"


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/api/crash")
    async def crash() -> None:
        raise RuntimeError(f"connection string postgresql://u:{SECRET}@db")

    @app.get("/api/ml-failure")
    async def ml_failure() -> None:
        raise MLError("inference failed")

    @app.post("/api/echo")
    async def echo(body: dict) -> dict:
        return body

    app.add_middleware(BodyLimitMiddleware, max_bytes=1000)
    app.add_middleware(ApiKeyMiddleware, api_key="")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_unexpected_exception_is_a_plain_500(client: httpx.AsyncClient, caplog) -> None:
    with caplog.at_level(logging.ERROR):
        response = await client.get("/api/crash")
    assert response.status_code == 500
    assert response.json() == {"success": False, "error": "internal_error", "message": "internal server error"}
    assert SECRET not in response.text and "Traceback" not in response.text
    assert any("GET /api/crash" in record.getMessage() for record in caplog.records)


async def test_ragserver_error_keeps_its_status_and_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/ml-failure")
    assert response.status_code == 500
    assert response.json() == {"success": False, "error": "ml_error", "message": "inference failed"}


async def test_validation_error_is_readable(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/echo", json=[1, 2])
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error" and body["message"].startswith("body")
    assert "input" not in str(body["details"])  # the offending input is not echoed back


async def test_body_under_the_cap_passes_and_over_is_413(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/echo", json={"a": "x" * 100})).status_code == 200
    response = await client.post("/api/echo", json={"a": "x" * 2000})
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("abc", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_key_matches() -> None:
    assert key_matches("", None) and key_matches("", "anything")
    assert key_matches("k1", "k1")
    assert not key_matches("k1", None) and not key_matches("k1", "k2") and not key_matches("k1", "k1 ")


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        (None, []),
        ("  ", []),
        ('["a", "b", "a"]', ["a", "b"]),
        ("a, b ,,c", ["a", "b", "c"]),
        ("[]", []),
    ],
)
def test_parse_tags(raw: str | None, tags: list[str]) -> None:
    assert parse_tags(raw) == tags


@pytest.mark.parametrize("raw", ['["a", 1]', '{"a": 1}', "[unclosed", ",".join(str(i) for i in range(60))])
def test_parse_tags_refuses(raw: str) -> None:
    with pytest.raises(InputError):
        parse_tags(raw)
