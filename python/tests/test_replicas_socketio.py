"""Socket.IO across replicas: a subscriber on B gets the events of an operation that runs on A, through Redis.

A and B are the app under real uvicorns on 127.0.0.1 over one embedded Postgres, both with REDIS_URL
pointing at Debian's redis-server, started here on a free port. Without redis-server the tests skip
saying so, unless RAGSERVER_REQUIRE_REDIS=1 (CI), where its absence fails them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
import socketio
from support.api_fixtures import RunningApp, free_port, live_server
from support.polling import apoll_until, poll_until

from ragserver.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EVENT_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of this module's own (no persistence) on a free 127.0.0.1 port."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("RAGSERVER_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is required (RAGSERVER_REQUIRE_REDIS=1): apt-get install -y redis-server")
        pytest.skip("redis-server is not installed (apt-get install -y redis-server); Socket.IO across replicas")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ragserver-redis-") as folder:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            poll_until(lambda: _answers(url, process), bool, what="redis-server to answer")
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def _answers(url: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, f"redis-server exited with {process.returncode}"
    try:
        with redis.Redis.from_url(url, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


async def _listeners(url: str) -> int:
    """How many Socket.IO servers listen on python-socketio's channel."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        counts = await client.pubsub_numsub("socketio")
        return int(counts[0][1])
    finally:
        await client.aclose()


@pytest.fixture
async def replicas(
    api_settings: Settings, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[RunningApp, RunningApp]]:
    settings = dataclasses.replace(api_settings, redis_url=redis_url)
    async with (
        live_server(dataclasses.replace(settings, data_dir=tmp_path / "a")) as a,
        live_server(dataclasses.replace(settings, data_dir=tmp_path / "b")) as b,
    ):
        yield a, b


async def test_every_replica_listens_on_redis_from_start_up_before_any_client_connects(
    replicas: tuple[RunningApp, RunningApp], redis_url: str
) -> None:
    """python-socketio subscribes at a replica's first connect by itself; events published before then would be
    lost there, so the app subscribes at start-up (redis-server counts the subscribers of the channel)."""
    await apoll_until(lambda: _listeners(redis_url), lambda n: n == 2, what="both replicas to listen on Redis")


async def test_a_subscriber_on_b_gets_the_events_of_an_operation_on_a(
    replicas: tuple[RunningApp, RunningApp], redis_url: str
) -> None:
    a, b = replicas
    op = a.runtime.tracker.start("test", message="runs on A")
    op.update(step="warming up", progress=10)
    await a.runtime.tracker.drain()  # written through: B can find it in the store

    events: asyncio.Queue[dict] = asyncio.Queue()
    client = socketio.AsyncClient(reconnection=False)
    client.on("progress", events.put)
    await client.connect(b.base_url, transports=["websocket"], wait_timeout=10)
    try:
        ack = await client.call("subscribe", {"progressId": op.id}, timeout=10)
        assert ack["success"] is True, ack
        first = await asyncio.wait_for(events.get(), EVENT_TIMEOUT_S)  # B's current state, from the store
        assert (first["progressId"], first["step"], first["progress"]) == (op.id, "warming up", 10)

        op.update(step="halfway", progress=50, counts={"chunks_stored": 3})
        event = await asyncio.wait_for(events.get(), EVENT_TIMEOUT_S)
        assert (event["status"], event["progress"], event["counts"]) == ("running", 50, {"chunks_stored": 3})
        op.finish("all done")
        assert (await asyncio.wait_for(events.get(), EVENT_TIMEOUT_S))["status"] == "completed"
        assert op.id not in {s["progressId"] for s in b.runtime.tracker.list()}  # B never ran it
    finally:
        await client.disconnect()


async def test_polling_on_b_answers_for_an_operation_that_ended_on_a(replicas: tuple[RunningApp, RunningApp]) -> None:
    a, b = replicas
    op = a.runtime.tracker.start("test", message="polled from B")
    op.finish("done", result={"n": 1})
    await a.runtime.tracker.drain()
    answer = (await b.client.get(f"/api/progress/{op.id}")).json()
    assert (answer["status"], answer["result"]) == ("completed", {"n": 1})
