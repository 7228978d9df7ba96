"""This replica's part when several server processes share one database.

What is queued, and who runs it:
- Crawls and refreshes are jobs: queued in rag_operations with their request, claimed by exactly
  one replica (`FOR UPDATE SKIP LOCKED`). The replica that received one claims it at once when it
  runs fewer than REPLICA_MAX_JOBS; otherwise it waits in the database for any replica with room.
  The request (crawl headers included, which the source keeps for its refreshes anyway) is
  never shown and is cleared once the job ends.
- Uploads, folder ingests and re-embeds run where they started (an upload's bytes are in that
  process); they are written through like every operation, so any replica shows and stops them.
  A re-embed also holds a job key (`start_here`): replicas that start at once run one pass; one
  left queued (its replica failed before claiming it) is claimed by any replica with room.
- One active operation per job key (a crawl's source) across all replicas: a second crawl of a
  source being crawled anywhere is refused with the first one's progressId.

A loop (`run`) beats for this replica's active operations every POLL_S, which is how it learns
that another replica asked for a stop (it cancels the task then), claims queued jobs while it has
room, and every RECOVER_EVERY_S ends what replicas that are gone left behind: their runs
(store.recover_interrupted_runs) and their operations, failed with a message saying why. The
owner's advisory lock, free for OWNER_GRACE_S without a heartbeat, tells that a replica is gone
(psycopg); over Supabase RPC, missed heartbeats.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ragserver.clock import Clock, LoopClock
from ragserver.errors import Busy, RagServerError
from ragserver.progress import ACTIVE, Operation, ProgressTracker
from ragserver.store import Store
from ragserver.store.operations import ClaimedJob

log = logging.getLogger(__name__)

POLL_S = 1.0
RECOVER_EVERY_S = 5.0
#: Runs a claimed job on this replica: validates its request and spawns its work on the operation.
JobRunner = Callable[[Operation, dict[str, Any]], None]


@dataclass(frozen=True)
class Queued:
    """A job left waiting in the database for a replica with room (what `submit` answers then)."""

    id: str


def replica_name() -> str:
    """A name unique to this process (two runtimes of one process included): host, pid and a random tag."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class ReplicaWorker:
    """Claims, heartbeats and recovery of one replica, over the store every replica shares."""

    def __init__(self, tracker: ProgressTracker, store: Store, max_jobs: int, clock: Clock | None = None) -> None:
        self.tracker = tracker
        self.store = store
        self.max_jobs = max_jobs
        self.replica = replica_name()
        self._clock: Clock = clock or LoopClock()
        self._runners: dict[str, JobRunner] = {}
        self._jobs: set[str] = set()  # ids of the jobs this replica claimed
        self._forgotten_stops: set[str] = set()  # stops asked for operations the tracker forgot (logged once)
        self._stopped = False
        tracker.share(store.operations, self.replica)

    def register(self, kind: str, runner: JobRunner) -> None:
        """Let this replica claim queued jobs of `kind` and run them with `runner`."""
        self._runners[kind] = runner

    @property
    def has_room(self) -> bool:
        return self.running_jobs() < self.max_jobs

    def running_jobs(self) -> int:
        """How many claimed jobs are still active here."""
        active = {op.id for op in self.tracker.owned()}
        self._jobs &= active
        return len(self._jobs)

    async def submit(
        self, kind: str, *, name: str, message: str, job_key: str | None, request: dict[str, Any]
    ) -> Operation | Queued:
        """Queue a job on `name` (Busy when an active operation holds `job_key`) and claim it here when
        there is room: the claimed Operation, whose work the caller starts, else Queued."""
        operation_id = await self.store.operations.enqueue(
            _queued(kind, name, message), job_key=job_key, request=request
        )
        if not self.has_room:
            return Queued(operation_id)
        job = await self.store.operations.claim([kind], self.replica, operation_id=operation_id)
        if job is None:  # stopped before it was claimed
            return Queued(operation_id)
        return self._adopt(job)

    async def start_here(self, kind: str, *, name: str, message: str, job_key: str) -> Operation | None:
        """Start an operation that runs on this replica (whatever its room) and holds `job_key` across
        replicas; None when an active operation holds the key (or the new one was stopped at once)."""
        try:
            operation_id = await self.store.operations.enqueue(
                _queued(kind, name, message), job_key=job_key, request={}
            )
        except Busy:
            return None
        job = await self.store.operations.claim([kind], self.replica, operation_id=operation_id)
        return None if job is None else self._adopt(job, counted=False)

    def stop(self) -> None:
        """End `run` at its next turn. Shutdown also cancels it, but a cancellation that lands inside a
        database call can come back as a store error, which the loop survives by design; the flag
        does not depend on that."""
        self._stopped = True

    async def run(self) -> None:
        """Beat, notice stops, claim and recover until stopped or cancelled (at shutdown)."""
        recovered_at = self._clock.now()
        away = False  # the last beat failed on the store: said once, and once more when it answers again
        while not self._stopped:
            try:
                await self.beat()
                await self.claim_queued()
                if self._clock.now() - recovered_at >= RECOVER_EVERY_S:
                    recovered_at = self._clock.now()
                    await self.recover()
                if away:
                    away = False
                    log.warning("replica %s: the database answers again", self.replica)
            except RagServerError as exc:  # the database is away: try again at the next beat
                if not away:
                    away = True
                    log.warning("replica %s: %s (trying again every %g s)", self.replica, exc.message, POLL_S)
            except Exception:  # a bug must not end this replica's part: log it, go on at the next beat
                log.exception("replica %s: beat failed", self.replica)
            await self._clock.sleep(POLL_S)

    async def beat(self) -> None:
        """Heartbeat of this replica's active operations; cancels those another replica asked to stop.
        States whose write failed are written again first, and a dropped owner session is opened again
        (its advisory lock is how the other replicas tell that this one lives)."""
        self.tracker.retry_unsaved()
        await self.store.keep_owner_lock()
        if not self.tracker.owned():
            return
        for operation_id in await self.store.operations.heartbeat(self.replica):
            op = self.tracker.known(operation_id)
            if op is None:  # ended here and forgotten while its final write failed: nothing left to stop
                if operation_id not in self._forgotten_stops:
                    self._forgotten_stops.add(operation_id)
                    log.warning(
                        "replica %s: a stop was asked for operation %s, which it no longer knows",
                        self.replica,
                        operation_id,
                    )
            elif op.status in ACTIVE:
                op.cancel()

    async def claim_queued(self) -> list[Operation]:
        """Claim and start queued jobs any replica may run, while this one has room; returns them."""
        started: list[Operation] = []
        while self._runners and self.has_room:
            job = await self.store.operations.claim(list(self._runners), self.replica)
            if job is None:
                break
            op = self._adopt(job)
            try:
                self._runners[job.kind](op, job.request)
            except Exception as exc:  # a request this version cannot read; its text may hold secrets: not shown
                op.fail(f"this replica cannot run this {job.kind} job: {type(exc).__name__}")
                continue
            started.append(op)
        return started

    async def recover(self) -> None:
        """End the runs and operations of replicas that are gone."""
        runs = await self.store.recover_interrupted_runs()
        operations = await self.store.operations.recover_interrupted()
        if runs or operations:
            log.warning("recovered %d runs and %d operations of replicas that stopped", runs, len(operations))

    def _adopt(self, job: ClaimedJob, *, counted: bool = True) -> Operation:
        """This replica's Operation for a job it claimed (`counted`: it takes room under max_jobs)."""
        op = self.tracker.start(
            job.kind,
            name=job.snapshot["name"],
            message=job.snapshot["message"],
            operation_id=job.operation_id,
            started_at=float(job.snapshot["startedAt"]),
        )
        if counted:
            self._jobs.add(op.id)
        return op


def _queued(kind: str, name: str, message: str) -> dict[str, str]:
    """The snapshot a new job is queued with (a fresh id; the store fills in the rest)."""
    return {"progressId": str(uuid.uuid4()), "type": kind, "name": name, "message": message}
