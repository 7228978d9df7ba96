"""Socket.IO on the HTTP port: auth at connect, subscribe/unsubscribe, progress pushed per operation.

Runs against the app under a real uvicorn on 127.0.0.1 with the python-socketio client (aiohttp).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
import socketio
from support.api_fixtures import API_KEY, RunningApp, live_server

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
async def server(api_settings) -> AsyncIterator[RunningApp]:
    async with live_server(dataclasses.replace(api_settings, ragserver_api_key=API_KEY)) as running:
        yield running


class ProgressClient:
    """A connected Socket.IO client that queues the `progress` events it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[dict] = asyncio.Queue()
        self.sio.on("progress", self.events.put)

    async def next_event(self, timeout: float = 30) -> dict:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def until_status(self, statuses: set[str], timeout: float = 120) -> list[dict]:
        seen = []
        while not seen or seen[-1]["status"] not in statuses:
            seen.append(await self.next_event(timeout))
        return seen


async def connected(server: RunningApp, **kwargs) -> ProgressClient:
    client = ProgressClient()
    await client.sio.connect(server.base_url, transports=["websocket"], wait_timeout=10, **kwargs)
    return client


async def test_connect_without_the_key_is_refused(server: RunningApp) -> None:
    for kwargs in ({}, {"auth": {"token": "wrong"}}, {"headers": {"Authorization": "Bearer wrong"}}):
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(server.base_url, transports=["websocket"], wait_timeout=5, **kwargs)
        await client.disconnect()


async def test_subscriber_gets_current_state_then_every_change(server: RunningApp) -> None:
    op = server.runtime.tracker.start("test", message="socket test")
    op.update(step="warming up", progress=10)
    client = await connected(server, auth={"token": API_KEY})
    try:
        ack = await client.sio.call("subscribe", {"progressId": op.id}, timeout=10)
        assert ack["success"] is True
        first = await client.next_event()
        assert first["progressId"] == op.id and first["progress"] == 10 and first["step"] == "warming up"

        op.update(step="halfway", progress=50, counts={"chunks_stored": 3})
        event = await client.next_event()
        assert (event["status"], event["progress"], event["counts"]) == ("running", 50, {"chunks_stored": 3})

        op.finish("all done")
        assert (await client.next_event())["status"] == "completed"

        await client.sio.call("unsubscribe", {"progressId": op.id}, timeout=10)
        other = server.runtime.tracker.start("test")
        other.finish()
        op.update(progress=99)  # finished operations no longer change
        await server.runtime.tracker.drain()  # whatever those pushed has been emitted
        # One socket delivers in order: a marker subscribed now arrives after anything emitted before it.
        marker = server.runtime.tracker.start("test")
        await client.sio.call("subscribe", {"progressId": marker.id}, timeout=10)
        assert (await client.next_event())["progressId"] == marker.id
        assert client.events.empty()
    finally:
        await client.sio.disconnect()


async def test_unknown_progress_id_is_answered(server: RunningApp) -> None:
    client = await connected(server, headers=AUTH)
    try:
        ack = await client.sio.call("subscribe", {"progressId": "no-such-id"}, timeout=10)
        assert ack["success"] is False and ack["error"] == "not_found"
        ack = await client.sio.call("subscribe", {}, timeout=10)
        assert ack["success"] is False
    finally:
        await client.sio.disconnect()


async def test_upload_progress_arrives_over_socketio(server: RunningApp) -> None:
    markdown = "\n\n".join(f"## Part {i}\n\nSocket progress paragraph {i} about streaming." for i in range(40))
    response = await server.client.post(
        "/api/documents/upload", files={"file": ("socket-progress.md", markdown.encode())}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    progress_id = response.json()["progressId"]

    client = await connected(server, auth={"token": API_KEY})
    try:
        await client.sio.call("subscribe", {"progressId": progress_id}, timeout=10)
        events = await client.until_status({"completed", "failed", "cancelled"})
    finally:
        await client.sio.disconnect()
    assert all(e["progressId"] == progress_id for e in events)
    assert events[-1]["status"] == "completed", events[-1]
    assert events[-1]["progress"] == 100
    progresses = [e["progress"] for e in events]
    assert progresses == sorted(progresses)
