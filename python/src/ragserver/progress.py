"""Long operations: their state, cancellation, and fan-out to listeners (Socket.IO) and polling.

Every ingest, crawl or re-embed gets an Operation with an id. Services update it; the tracker
keeps the latest state (for `GET /api/progress/{id}` with an ETag) and pushes changes to the
registered listeners (the Socket.IO room of that id). Pushes are coalesced: a change of status
goes out at once, counter updates at most every PUBLISH_INTERVAL_S per operation, always ending
with the latest state; an ingest updates its counters per document, and each push is a
websocket send to every subscriber, all on the event loop. The interval is measured on an
injected Clock (the event loop's by default), so tests step time instead of sleeping.

Across replicas (`share`, once the store is open): every state is written through to the store
(rag_operations) with the same coalescing as the pushes (status changes at once), so any replica
answers `find` for an operation another one runs and `stop` asks its owner to end it (the owner
notices through its heartbeat, ragserver.replicas). Writes of one operation go one at a time, in
order; the store keeps the newest (a version number) and never changes an ended one. A write
that failed (the store was away) is made again, with the latest state, at the replica's next beat.

`ProgressTracker.run` and `.spawn` are the one way a service runs an operation's work: the
outcome ends the operation (completed, failed or cancelled), and a cancel request cancels the
work's task at once, while it waits on anything. Services may still call `raise_if_cancelled()`
between units of work that they drive themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue

from ragserver.clock import Clock, LoopClock
from ragserver.errors import NotFound, RagServerError
from ragserver.store.operations import OperationStore, Snapshot

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], Awaitable[None]]
Result = dict[str, Any]
Work = Coroutine[Any, Any, Result]
Snapshots = list[Snapshot]  # aliases: inside ProgressTracker, `list` names its method

ACTIVE = {"starting", "running", "cancelling"}
FINAL = {"completed", "failed", "cancelled"}
KEEP_FINISHED = 200
PUBLISH_INTERVAL_S = 0.25  # at most 4 pushes a second per operation (status changes go at once)


class ProgressSnapshot(BaseModel):
    """The typed form of `Operation.snapshot()`, what polling (HTTP, MCP) answers and Socket.IO pushes."""

    progressId: str
    type: str = Field(description="upload | ingest | crawl | reembed")
    name: str = Field(description="What it works on: a crawl's start URL, an uploaded file's name, a source's title")
    status: Literal["starting", "running", "cancelling", "completed", "failed", "cancelled"]
    progress: float = Field(ge=0, le=100)
    step: str
    message: str
    counts: dict[str, int]
    result: dict[str, JsonValue] = Field(description="What the operation produced (e.g. source_id), once it ended")
    error: str | None
    startedAt: float = Field(description="Unix time")
    updatedAt: float = Field(description="Unix time")


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
    name: str = ""  # what it works on, for people (a card's title): a URL, a file name, a source's title
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
    _ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def cancelled(self) -> bool:
        """True once someone asked to stop this operation."""
        return self._cancel.is_set()

    async def cancel_requested(self) -> None:
        """Returns once someone asked to stop this operation (what the runner's watcher awaits)."""
        await self._cancel.wait()

    async def ended(self) -> None:
        """Returns once the operation is completed, failed or cancelled."""
        await self._ended.wait()

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
            "name": self.name,
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
        return etag_of(self.snapshot())

    def _end(self, status: str, message: str, *, error: str | None = None, result: Result | None = None) -> None:
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
        self._ended.set()

    def _changed(self) -> None:
        self.updated_at = time.time()
        self.version += 1
        self.tracker.publish(self)


def etag_of(snapshot: Snapshot) -> str:
    """A strong ETag of a snapshot (this replica's or the store's), for 304 answers to pollers."""
    body = json.dumps(snapshot, sort_keys=True, default=str).encode()
    return '"' + hashlib.sha1(body).hexdigest() + '"'


class ProgressTracker:
    """Registry of operations, the runner of their work, and fan-out of their changes to async listeners."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or LoopClock()
        self._operations: dict[str, Operation] = {}
        self._listeners: list[Listener] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self._running: set[asyncio.Task[None]] = set()  # spawned operations: referenced until they end
        self._pushed: dict[str, tuple[float, str, int]] = {}  # id -> (clock time, status, version) pushed
        self._held: set[str] = set()  # ids with a push scheduled for later
        self._shared: OperationStore | None = None
        self.replica = ""  # this replica's name in the store (owner of the operations it runs)
        self._unsaved: set[str] = set()  # ids with a state not yet written through
        self._writing: set[str] = set()  # ids with a write-through task running
        self._write_failed: set[str] = set()  # ids whose last write failed (logged once until one succeeds)

    def share(self, operations: OperationStore, replica: str) -> None:
        """Write every operation's state through to the store from now on, as `replica`'s."""
        self._shared, self.replica = operations, replica
        for op in self._operations.values():  # started before the store opened (rare): write them too
            self.publish(op)

    def start(
        self,
        kind: str,
        *,
        name: str = "",
        message: str = "",
        operation_id: str | None = None,
        started_at: float | None = None,
    ) -> Operation:
        """Create and register a new operation of the given kind (upload, crawl, ingest, reembed) on `name`."""
        op = Operation(id=operation_id or str(uuid.uuid4()), kind=kind, tracker=self, name=name, message=message)
        if started_at is not None:  # a queued job keeps the time it was queued
            op.started_at = started_at
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

    def known(self, operation_id: str) -> Operation | None:
        """The operation with this id while this replica still keeps it, else None."""
        return self._operations.get(operation_id)

    def list(self, *, active_only: bool = False) -> list[dict[str, Any]]:
        """Snapshots of known operations, newest first."""
        ops = sorted(self._operations.values(), key=lambda o: o.started_at, reverse=True)
        return [o.snapshot() for o in ops if not active_only or o.status in ACTIVE]

    def cancel(self, operation_id: str) -> bool:
        """Ask one operation of this replica to stop; NotFound for an unknown id."""
        return self.get(operation_id).cancel()

    def owned(self) -> tuple[Operation, ...]:
        """This replica's active operations."""
        return tuple(op for op in self._operations.values() if op.status in ACTIVE)

    async def find(self, operation_id: str) -> Snapshot:
        """The snapshot of an operation of any replica (this one's without a database call); NotFound."""
        holder = self._holder(operation_id)
        return holder.snapshot() if isinstance(holder, Operation) else await holder.get(operation_id)

    async def stop(self, operation_id: str) -> bool:
        """Ask an operation of any replica to stop (its owner notices); False when it had already ended."""
        holder = self._holder(operation_id)
        if isinstance(holder, Operation):
            return holder.cancel()
        return (await holder.request_cancel(operation_id)).stopping

    def _holder(self, operation_id: str) -> Operation | OperationStore:
        """This replica's operation of that id, else the store that knows the others' (NotFound without one)."""
        op = self.known(operation_id)
        if op is not None:
            return op
        if self._shared is None:
            raise NotFound(f"no operation with id {operation_id!r}")
        return self._shared

    async def overview(self, *, active_only: bool = False) -> Snapshots:
        """Snapshots of the operations of every replica (this one's as they are now), newest first."""
        own = self.list(active_only=active_only)
        if self._shared is None:
            return own
        known = {snapshot["progressId"] for snapshot in own}
        others = [s for s in await self._shared.snapshots(active_only=active_only) if s["progressId"] not in known]
        return sorted(own + others, key=lambda s: float(s["startedAt"]), reverse=True)

    def add_listener(self, listener: Listener) -> None:
        """Register an async callback that receives every snapshot change."""
        self._listeners.append(listener)

    # -- running an operation's work ------------------------------------------------------------

    async def run(self, op: Operation, work: Work, *, done: Callable[[Result], str], stopped: str) -> Result:
        """Await `work` as the work of `op` and end `op` from the outcome; re-raises a failure.

        A cancel request cancels the work's task; the operation then ends cancelled with the
        message `stopped`, and the caller gets OperationCancelled. Cancelling the caller (shutdown)
        cancels the work too. On success the operation completes with `done(result)`.
        """
        try:
            result = await _until_cancel_requested(op, asyncio.ensure_future(work))
        except (OperationCancelled, asyncio.CancelledError):
            op.mark_cancelled(stopped)
            raise
        except RagServerError as exc:
            op.fail(exc.message)
            raise
        except Exception as exc:
            log.exception("operation %s (%s) failed", op.id, op.kind)
            op.fail(f"{type(exc).__name__}: {exc}")
            raise
        op.finish(done(result), result=result)
        return result

    def spawn(self, op: Operation, work: Work, *, done: Callable[[Result], str], stopped: str) -> None:
        """`run` in the background (the server): the outcome is on the operation, failures are logged there."""

        async def quietly() -> None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self.run(op, work, done=done, stopped=stopped)

        task = asyncio.get_running_loop().create_task(quietly(), name=f"{op.kind}-{op.id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def cancel_all(self, timeout: float = 10.0) -> None:
        """At shutdown: ask every active operation to stop and wait (up to `timeout`) for them to end.

        Spawned work still running after that is cancelled outright and awaited.
        """
        active = [op for op in self._operations.values() if op.status in ACTIVE]
        for op in active:
            op.cancel()
        waits = [asyncio.ensure_future(op.ended()) for op in active] + list(self._running)
        if waits:
            await asyncio.wait(waits, timeout=timeout)
        for wait in waits:
            wait.cancel()
        if self._running:
            await asyncio.wait(list(self._running))
        with contextlib.suppress(Exception):
            await self.drain()

    # -- fan-out --------------------------------------------------------------------------------

    def publish(self, op: Operation) -> None:
        """Push the operation's state to every listener without blocking the caller.

        A new status goes out at once; other changes within PUBLISH_INTERVAL_S of the last push
        are held and go out together, as the latest state, when the interval has passed.
        """
        if not self._listeners and self._shared is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        pushed = self._pushed.get(op.id)
        wait = pushed[0] + PUBLISH_INTERVAL_S - self._clock.now() if pushed and pushed[1] == op.status else 0.0
        if wait <= 0:
            self._push(loop, op)
        elif op.id not in self._held:
            self._held.add(op.id)
            self._clock.call_later(wait, lambda: self._push_held(loop, op))

    def _push_held(self, loop: asyncio.AbstractEventLoop, op: Operation) -> None:
        self._held.discard(op.id)
        pushed = self._pushed.get(op.id)
        if pushed is None or pushed[2] != op.version:  # not already pushed by a status change
            self._push(loop, op)

    def _push(self, loop: asyncio.AbstractEventLoop, op: Operation) -> None:
        self._pushed[op.id] = (self._clock.now(), op.status, op.version)
        snapshot = op.snapshot()
        for listener in self._listeners:
            self._track(loop.create_task(self._deliver(listener, snapshot)))
        if self._shared is not None:
            self._unsaved.add(op.id)
            self._write_soon(loop, self._shared, op)

    def _write_soon(self, loop: asyncio.AbstractEventLoop, shared: OperationStore, op: Operation) -> None:
        """Start writing `op` through unless a write of it is running (that one writes the latest state too)."""
        if op.id not in self._writing:
            self._writing.add(op.id)
            self._track(loop.create_task(self._write_through(shared, op)))

    def retry_unsaved(self) -> None:
        """Write again the states whose write failed (the store was away); the replica loop calls it each beat.

        Without it an operation that ended while the store was away would stay active there: shown
        running by the other replicas, and its job key (a crawl's source) held, for as long as this
        process lives."""
        if self._shared is None or not self._unsaved:
            return
        loop = asyncio.get_running_loop()
        for operation_id in list(self._unsaved):
            op = self._operations.get(operation_id)
            if op is not None:
                self._write_soon(loop, self._shared, op)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _write_through(self, shared: OperationStore, op: Operation) -> None:
        """Write `op`'s latest state until none is left unwritten; a stop asked in the store cancels it."""
        try:
            while op.id in self._unsaved:
                self._unsaved.discard(op.id)
                try:
                    stop_asked = await shared.save(op.snapshot(), op.version + 1, self.replica)
                except RagServerError as exc:  # the operation goes on; other replicas see an older state meanwhile
                    self._unsaved.add(op.id)  # written again by retry_unsaved
                    if op.id not in self._write_failed:
                        self._write_failed.add(op.id)
                        log.warning("could not write operation %s to the store (retried): %s", op.id, exc.message)
                    return
                if op.id in self._write_failed:
                    self._write_failed.discard(op.id)
                    log.info("operation %s written to the store again", op.id)
                if stop_asked:
                    op.cancel()
        finally:
            self._writing.discard(op.id)

    async def drain(self) -> None:
        """Wait until every delivery already started has run (used at shutdown and in tests).

        Pushes still held by the coalescing interval are not waited for; final states are never
        held (a new status goes out at once)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

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
            self._unsaved.discard(op.id)
            self._write_failed.discard(op.id)


async def _until_cancel_requested(op: Operation, work: asyncio.Future[Result]) -> Result:
    """The work's result; its task is cancelled when `op` is asked to stop (OperationCancelled then)
    or when the caller is cancelled (CancelledError), and awaited either way before returning."""
    stop = asyncio.ensure_future(op.cancel_requested())
    either: list[asyncio.Future[Any]] = [work, stop]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait({work})  # not gather: a second cancel of the caller must not re-cancel the work
    if work.cancelled():
        raise OperationCancelled(f"operation {op.id} was cancelled")
    return work.result()
