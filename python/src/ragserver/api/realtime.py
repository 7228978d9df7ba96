"""Socket.IO on the HTTP port: progress of long operations pushed to the room of each operation.

A client connects (with the API key in `auth={'token': ...}` or an Authorization header when one
is configured), emits `subscribe` {progressId} and immediately receives the current state as a
`progress` event, so a subscriber that arrives late still sees where the operation stands.

Several replicas: an operation may run on another replica than the one a client is connected to.
Its current state then comes from the store, and with REDIS_URL set the server is built on
python-socketio's AsyncRedisManager, so the owner's `progress` events reach the subscribers of
every replica through Redis. Without Redis each replica pushes only its own operations (polling
`GET /api/progress/{id}` answers for all of them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import socketio

from ragserver.api.guards import bearer_token, key_matches
from ragserver.errors import RagServerError
from ragserver.progress import ProgressTracker

log = logging.getLogger(__name__)


Ack = dict[str, str | bool | None]


def build_socketio(tracker: ProgressTracker, api_key: str, redis_url: str = "") -> socketio.AsyncServer:
    """A Socket.IO server whose `progress` events follow the tracker (through Redis when `redis_url` is set)."""
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
    )

    async def connect(sid: str, environ: Mapping[str, object], auth: object = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        header = environ.get("HTTP_AUTHORIZATION")
        token = token or bearer_token(header if isinstance(header, str) else None)
        if not key_matches(api_key, token if isinstance(token, str) else None):
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")

    async def subscribe(sid: str, data: object) -> Ack:
        progress_id = _progress_id(data)
        if not progress_id:
            return {"success": False, "error": "bad_request", "message": "progressId is required"}
        try:
            snapshot = await tracker.find(progress_id)
        except RagServerError as exc:  # unknown id, or the store cannot answer for another replica's
            return {"success": False, "error": exc.code, "message": exc.message}
        await sio.enter_room(sid, progress_id)
        await sio.emit("progress", snapshot, to=sid)
        return {"success": True, "progressId": progress_id}

    async def unsubscribe(sid: str, data: object) -> Ack:
        progress_id = _progress_id(data)
        if progress_id:
            await sio.leave_room(sid, progress_id)
        return {"success": True, "progressId": progress_id}

    async def forward(snapshot: dict[str, Any]) -> None:
        await sio.emit("progress", snapshot, room=snapshot["progressId"])

    # registered by call, not by decorator: python-socketio ships no types, a decorator would untype the handlers
    for handler in (connect, subscribe, unsubscribe):
        sio.on(handler.__name__, handler)
    tracker.add_listener(forward)
    return sio


def listen_to_other_replicas(sio: socketio.AsyncServer) -> None:
    """At start-up: subscribe to Redis now. python-socketio would do it at the first client's connect,
    and the events published until that subscription is in place (the end of an operation a
    client just subscribed to on this replica) would be lost here. No Redis: nothing to do."""
    if isinstance(sio.manager, socketio.AsyncRedisManager) and not sio.manager_initialized:
        sio.manager_initialized = True  # the flag its connect handler checks, so it does not start a second listener
        sio.manager.initialize()


async def stop_socketio(sio: socketio.AsyncServer) -> None:
    """At shutdown: end the task that listens to Redis for the other replicas' events (when one started)."""
    listener = getattr(sio.manager, "thread", None)
    if isinstance(listener, asyncio.Task):
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


def _progress_id(data: object) -> str | None:
    """The id a client sent, as {progressId} or a bare string."""
    value = data.get("progressId") if isinstance(data, dict) else data
    return value if isinstance(value, str) and value.strip() else None
