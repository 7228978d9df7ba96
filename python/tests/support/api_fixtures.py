"""API fixtures (owned by the api room): the app on the real store and the tiny real models.

`api` drives the ASGI app in-process (httpx ASGITransport + the app's own lifespan);
`live_server` runs it under uvicorn on 127.0.0.1 for clients that need a socket (Socket.IO).
The app is imported inside the helpers so that loading this plugin never depends on every room
being importable.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from ragserver.config import Settings
from support.polling import apoll_state, wait_http
from support.store_fixtures import create_database, drop_database

API_KEY = "test-key-0123456789"
READY_TIMEOUT_S = 120


@dataclass
class RunningApp:
    """An app whose lifespan is running, a client for it, and its runtime for white-box checks."""

    app: Any
    client: httpx.AsyncClient
    runtime: Any
    base_url: str = "http://testserver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def running_app(settings: Settings, *, wait_ml: bool = True) -> AsyncIterator[RunningApp]:
    """create_app(settings) with its lifespan entered; waits until the database (and ML) are up."""
    from ragserver.app import create_app

    app = create_app(settings)
    fastapi_app = app.other_asgi_app
    async with fastapi_app.router.lifespan_context(fastapi_app):
        runtime = fastapi_app.state.runtime
        await asyncio.wait_for(runtime.wait_ready(with_ml=wait_ml), READY_TIMEOUT_S)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
            yield RunningApp(app=app, client=client, runtime=runtime)


@contextlib.asynccontextmanager
async def live_server(settings: Settings) -> AsyncIterator[RunningApp]:
    """The app under a real uvicorn on a free 127.0.0.1 port, in this event loop."""
    from ragserver.app import create_app

    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    def started() -> bool:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited before it started")
        return server.started

    try:
        await apoll_state(started, bool, what="uvicorn to start", timeout=READY_TIMEOUT_S)
        runtime = app.other_asgi_app.state.runtime
        await asyncio.wait_for(runtime.wait_ready(), READY_TIMEOUT_S)
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            yield RunningApp(app=app, client=client, runtime=runtime, base_url=base_url)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_settings(
    pg_server: Any, pg_template: str, ml_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    """A migrated database of the API tests (shared by the session) with the tiny real models."""
    name = await create_database(pg_server, template=pg_template)
    try:
        yield dataclasses.replace(
            ml_settings,
            database_url=pg_server.uri(name),
            data_dir=tmp_path_factory.mktemp("api-data"),
            use_reranking=True,
            max_upload_mb=1,
        )
    finally:
        await drop_database(pg_server, name)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api(api_settings: Settings) -> AsyncIterator[RunningApp]:
    """The app without an API key, shared by the API tests of a session."""
    async with running_app(api_settings) as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api_with_key(api_settings: Settings) -> AsyncIterator[RunningApp]:
    """The app with RAGSERVER_API_KEY set."""
    async with running_app(dataclasses.replace(api_settings, ragserver_api_key=API_KEY)) as running:
        yield running


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make a child process read these settings."""
    env = {}
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        env[f.name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@contextlib.contextmanager
def serve_subprocess(settings: Settings, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """`ragserver serve` (the console script) on a free 127.0.0.1 port; yields its base URL.

    Waits until /health answers at all (503 while starting is fine); stops it with SIGINT like
    Ctrl-C and checks it exits cleanly.
    """
    port = free_port()
    env = {**os.environ, **settings_env(settings), "HOST": "127.0.0.1", "PORT": str(port), **(extra_env or {})}
    base_url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "ragserver"), "serve"]
    with tempfile.TemporaryFile() as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_http(f"{base_url}/health", process=process, log=lambda: _read(log_file), timeout=READY_TIMEOUT_S)
            yield base_url
        finally:
            process.send_signal(signal.SIGINT)
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
        assert code == 0, f"ragserver serve exited with {code}: {_read(log_file)}"


def _read(log_file: Any) -> str:
    log_file.seek(0)
    return log_file.read().decode(errors="replace")[-4000:]


def wait_for_health(base_url: str, accept: Callable[[httpx.Response], bool], timeout: float = READY_TIMEOUT_S) -> dict:
    """Poll /health of a live server until `accept` says yes; returns that body."""
    return wait_http(f"{base_url}/health", accept, timeout=timeout).json()
