"""The server answers before it is ready: /health is 503 'starting' until the database is migrated."""

from __future__ import annotations

import dataclasses
import gc

import httpx
from support.api_fixtures import free_port, running_app
from support.polling import apoll_state, apoll_until

from ragserver.app import create_app
from ragserver.config import Settings


async def test_health_is_503_until_the_database_is_up(tmp_path) -> None:
    """A database that does not answer (nothing listens on the port) keeps the server in 'starting'.

    Stopping the app must not wait for the store's connection timeout either. An unreadable
    ml-env.json keeps the ML service from importing torch in a thread this short test would abandon.
    """
    (tmp_path / "ml-env.json").write_text("not json")
    dead = f"postgresql://nobody:secret-pw@127.0.0.1:{free_port()}/none?connect_timeout=2"
    settings = dataclasses.replace(Settings(), database_url=dead, ml_user_base=tmp_path, data_dir=tmp_path)
    app = create_app(settings)
    fastapi_app = app.other_asgi_app
    async with fastapi_app.router.lifespan_context(fastapi_app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/health")
            body = response.json()
            assert response.status_code == 503 and body["status"] == "starting", body
            assert body["database"]["state"] in {"starting", "error"} and "secret-pw" not in response.text

            response = await apoll_until(
                lambda: client.get("/health"),
                lambda r: r.json()["database"]["state"] == "error",
                what="/health after the failed connect",
            )
            body = response.json()
            assert response.status_code == 503 and body["status"] == "starting", body  # still retrying
            assert body["issues"][0].startswith("database: ") and "secret-pw" not in response.text

            query = await client.post("/api/rag/query", json={"query": "anything"})
            assert query.status_code == 503 and query.json()["error"] == "unavailable"


async def test_the_start_up_heap_is_frozen_once_ready(api_settings: Settings) -> None:
    """What start-up allocated is taken out of the cyclic GC's sight, so a full collection (long once
    the models are loaded, see RELIABILITY.md) no longer stops the event loop."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with running_app(api_settings):
        frozen = await apoll_state(gc.get_freeze_count, lambda count: count > 0, what="the frozen heap")
        assert frozen > 10_000
