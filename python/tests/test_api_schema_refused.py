"""A database whose released migration was edited is refused for good, never retried.

The tampered checksum row stands for a released migration file edited after it was applied
(or a database made by a build nobody released): start-up must refuse it, /health must say why
(naming the migration), and `ragserver serve` / `ragserver migrate` must exit non-zero.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from support.api_fixtures import READY_TIMEOUT_S, free_port, settings_env

from ragserver.app import create_app
from ragserver.config import Settings

RAGSERVER = str(Path(sys.executable).parent / "ragserver")


async def tamper_first_migration(database_url: str) -> str:
    """Change the recorded checksum of the first applied migration; returns its name."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT min(name) FROM rag_schema_migrations")).fetchone()
        assert row is not None and row[0], "the test database has no recorded migration"
        await conn.execute(
            "UPDATE rag_schema_migrations SET checksum = 'edited-after-release' WHERE name = %s", (row[0],)
        )
        return str(row[0])


def without_ml(settings: Settings, folder: Path) -> Settings:
    """An unreadable ml-env.json: the ML service settles at once instead of importing torch."""
    (folder / "ml-env.json").write_text("not json")
    return dataclasses.replace(settings, ml_user_base=folder)


async def test_health_names_the_refused_migration(pg_settings: Settings, tmp_path: Path) -> None:
    migration = await tamper_first_migration(pg_settings.database_url)
    app = create_app(without_ml(pg_settings, tmp_path))
    fastapi_app = app.other_asgi_app
    async with fastapi_app.router.lifespan_context(fastapi_app):
        runtime = fastapi_app.state.runtime
        await asyncio.wait_for(runtime.failed.wait(), READY_TIMEOUT_S)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/health")
            body = response.json()
            assert response.status_code == 503 and body["status"] == "error", body
            assert body["database"]["state"] == "error" and migration in body["database"]["reason"], body
            assert body["issues"][0] == f"database: {body['database']['reason']}"

            query = await client.post("/api/rag/query", json={"query": "anything"})
            assert query.status_code == 503 and query.json()["error"] == "unavailable"
        assert not runtime.ready.is_set() and runtime.failure is not None
        assert body["database"]["reason"] == runtime.failure.message  # whole, not cut short


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "migrate"])
async def test_the_command_exits_non_zero_naming_the_migration(
    pg_settings: Settings, tmp_path: Path, command: str
) -> None:
    migration = await tamper_first_migration(pg_settings.database_url)
    settings = without_ml(pg_settings, tmp_path)
    env = {**os.environ, **settings_env(settings), "HOST": "127.0.0.1", "PORT": str(free_port())}
    result = await asyncio.to_thread(
        subprocess.run, [RAGSERVER, command], env=env, capture_output=True, text=True, timeout=READY_TIMEOUT_S
    )
    assert result.returncode == 1, result.stdout + result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and migration in last_line, result.stderr
    assert "Traceback" not in result.stderr
