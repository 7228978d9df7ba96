"""Long operations: their state, cancellation, and fan-out to listeners (Socket.IO) and polling.

Every ingest, crawl or re-embed gets an Operation with an id. Services update it; the tracker
keeps the latest state (for `GET /api/progress/{id}` with an ETag) and pushes changes to the
registered listeners (the Socket.IO room of that id). Pushes are coalesced: a change of status
goes out at once, counter updates at most every PUBLISH_INTERVAL_S per operation, always ending
with the latest state; an ingest updates its counters per document, and each push is a
websocket send to every subscriber, all on the event loop. Cancellation is cooperative: the
service calls `raise_if_cancelled()` between units of work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ragserver.errors import NotFound, RagServerError

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], Awaitable[None]]

ACTIVE = {"starting", "running", "cancelling"}
FINAL = {"completed", "failed", "cancelled"}
KEEP_FINISHED = 200
PUBLISH_INTERVAL_S = 0.25  # at most 4 pushes a second per operation (status changes go at once)


class OperationCancelled(RagServerError):
    """Raised inside a service when its operation was cancelled; the service cleans up and re-raises."""

    status_code = 409
    code = "cancelled"


@dataclass
class Operation:
    """One long operation; mutate it only through `update`, `finish`, `fail` and `cancel`."""

    id: str
    kind: str
    tracker: ProgressTracker
    status: str = "starting"
    progress: float = 0.0
    step: str = "starting"
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    version: int = 0  # bumped on every change (a clock tick can hold several)
    _cancel: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def cancelled(self) -> bool:
        """True once someone asked to stop this operation."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        """Services call this between units of work to honour a stop request."""
        if self._cancel.is_set():
            raise OperationCancelled(f"operation {self.id} was cancelled")

    def update(
        self,
        *,
        step: str | None = None,
        progress: float | None = None,
        message: str | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        """Record progress; counts are merged. Listeners get the new state."""
        if self.status in FINAL:
            return
        if self.status == "starting":
            self.status = "running"
        if step is not None:
            self.step = step
        if progress is not None:
            self.progress = max(0.0, min(100.0, float(progress)))
        if message is not None:
            self.message = message
        if counts:
            self.counts.update(counts)
        self._changed()

    def increment(self, **counts: int) -> None:
        """Add to named counters (pages_crawled=1, chunks_stored=12, ...)."""
        merged = {name: self.counts.get(name, 0) + value for name, value in counts.items()}
        self.update(counts=merged)

    def finish(self, message: str = "done", result: dict[str, Any] | None = None) -> None:
        """Mark the operation completed."""
        self._end("completed", message, result=result)

    def fail(self, error: str) -> None:
        """Mark the operation failed with a message the user can act on."""
        self._end("failed", error, error=error)

    def mark_cancelled(self, message: str = "cancelled") -> None:
        """Final state after the service stopped because of a cancel request."""
        self._end("cancelled", message)

    def cancel(self) -> bool:
        """Ask the operation to stop; False when it had already ended."""
        if self.status in FINAL:
            return False
        self._cancel.set()
        self.status = "cancelling"
        self._changed()
        return True

    def snapshot(self) -> dict[str, Any]:
        """The JSON the API and Socket.IO send for this operation."""
        return {
            "progressId": self.id,
            "type": self.kind,
            "status": self.status,
            "progress": round(self.progress, 1),
            "step": self.step,
            "message": self.message,
            "counts": dict(self.counts),
            "result": dict(self.result),
            "error": self.error,
            "startedAt": self.started_at,
            "updatedAt": self.updated_at,
        }

    def etag(self) -> str:
        """A strong ETag of the current snapshot, for 304 answers to pollers."""
        body = json.dumps(self.snapshot(), sort_keys=True, default=str).encode()
        return '"' + hashlib.sha1(body).hexdigest() + '"'

    def _end(self, status: str, message: str, *, error: str | None = None, result: dict | None = None) -> None:
        if self.status in FINAL:
            return
        self.status = status
        self.message = message
        self.error = error
        if result:
            self.result.update(result)
        if status == "completed":
            self.progress = 100.0
        self._changed()

    def _changed(self) -> None:
        self.updated_at = time.time()
        self.version += 1
        self.tracker.publish(self)


class ProgressTracker:
    """Registry of operations and fan-out of their changes to async listeners."""

    def __init__(self) -> None:
        self._operations: dict[str, Operation] = {}
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task] = set()
        self._pushed: dict[str, tuple[float, str, int]] = {}  # id -> (monotonic, status, version) pushed
        self._held: set[str] = set()  # ids with a push scheduled for later

    def start(self, kind: str, *, message: str = "", operation_id: str | None = None) -> Operation:
        """Create and register a new operation of the given kind (upload, crawl, ingest, reembed)."""
        op = Operation(id=operation_id or str(uuid.uuid4()), kind=kind, tracker=self, message=message)
        self._operations[op.id] = op
        self._forget_old()
        self.publish(op)
        return op

    def get(self, operation_id: str) -> Operation:
        """The operation with this id, or NotFound."""
        try:
            return self._operations[operation_id]
        except KeyError:
            raise NotFound(f"no operation with id {operation_id!r}") from None

    def list(self, *, active_only: bool = False) -> list[dict[str, Any]]:
        """Snapshots of known operations, newest first."""
        ops = sorted(self._operations.values(), key=lambda o: o.started_at, reverse=True)
        return [o.snapshot() for o in ops if not active_only or o.status in ACTIVE]

    def cancel(self, operation_id: str) -> bool:
        """Ask one operation to stop; NotFound for an unknown id."""
        return self.get(operation_id).cancel()

    def add_listener(self, listener: Listener) -> None:
        """Register an async callback that receives every snapshot change."""
        self._listeners.append(listener)

    def publish(self, op: Operation) -> None:
        """Push the operation's state to every listener without blocking the caller.

        A new status goes out at once; other changes within PUBLISH_INTERVAL_S of the last push
        are held and go out together, as the latest state, when the interval has passed.
        """
        if not self._listeners:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        pushed = self._pushed.get(op.id)
        wait = 0.0 if pushed is None or pushed[1] != op.status else pushed[0] + PUBLISH_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self._push(loop, op)
        elif op.id not in self._held:
            self._held.add(op.id)
            loop.call_later(wait, self._push_held, loop, op)

    def _push_held(self, loop: asyncio.AbstractEventLoop, op: Operation) -> None:
        self._held.discard(op.id)
        pushed = self._pushed.get(op.id)
        if pushed is None or pushed[2] != op.version:  # not already pushed by a status change
            self._push(loop, op)

    def _push(self, loop: asyncio.AbstractEventLoop, op: Operation) -> None:
        self._pushed[op.id] = (time.monotonic(), op.status, op.version)
        snapshot = op.snapshot()
        for listener in self._listeners:
            task = loop.create_task(self._deliver(listener, snapshot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every delivery already started has run (used at shutdown and in tests).

        Pushes still held by the coalescing interval are not waited for; final states are never
        held (a new status goes out at once)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self, timeout: float = 10.0) -> None:
        """At shutdown: ask every active operation to stop and give them a moment to clean up."""
        active = [op for op in self._operations.values() if op.status in ACTIVE]
        for op in active:
            op.cancel()
        deadline = time.monotonic() + timeout
        while any(op.status in ACTIVE for op in active) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        with contextlib.suppress(Exception):
            await self.drain()

    @staticmethod
    async def _deliver(listener: Listener, snapshot: dict[str, Any]) -> None:
        try:
            await listener(snapshot)
        except Exception:  # a broken subscriber must not break the operation
            log.exception("progress listener failed")

    def _forget_old(self) -> None:
        finished = [o for o in self._operations.values() if o.status in FINAL]
        if len(finished) <= KEEP_FINISHED:
            return
        finished.sort(key=lambda o: o.updated_at)
        for op in finished[: len(finished) - KEEP_FINISHED]:
            del self._operations[op.id]
            self._pushed.pop(op.id, None)
