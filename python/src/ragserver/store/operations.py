"""Operations in the database, so that every replica answers for and stops any of them.

Thin methods over the rag_*operation* functions (store/functions/40_operations.sql), on the same
Transport as the Store: psycopg or Supabase RPC alike. An operation goes in and comes out as the
JSON snapshot the API shows; the replica that runs it is its `owner`, and the process's advisory
lock key (None over RPC, where missed heartbeats tell instead) lets the others see it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragserver.errors import Busy
from ragserver.store.transport import Transport

Snapshot = dict[str, Any]

#: An operation whose owner holds no lock (Supabase RPC) counts as interrupted after this long without a heartbeat.
STALE_OPERATION_S = 60
#: An owner whose advisory lock is free (its session dropped: a Postgres restart, a proxy) counts as gone only
#: after this long without a heartbeat; a live one beats every second and takes its lock again meanwhile.
OWNER_GRACE_S = 10
#: Ended operations are forgotten this long after they ended.
KEEP_ENDED_S = 7 * 24 * 3600
LIST_LIMIT = 200


@dataclass(frozen=True)
class ClaimedJob:
    """A queued job this replica now owns: what to run, and the operation as it was queued."""

    operation_id: str
    kind: str
    request: dict[str, Any]
    snapshot: Snapshot


@dataclass(frozen=True)
class StopAnswer:
    """What a stop request did: `stopping` False when the operation had already ended."""

    stopping: bool
    owner: str | None


class OperationStore:
    """The rag_operations rows, written by their owner and read by every replica."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @property
    def owner_lock(self) -> int | None:
        return self.transport.owner_lock

    async def save(self, snapshot: Snapshot, version: int, owner: str) -> bool:
        """Write the owner's latest state; True when someone asked to stop the operation."""
        rows = await self.transport.call(
            "rag_save_operation",
            {"p_op": snapshot, "p_version": version, "p_owner": owner, "p_owner_lock": self.owner_lock},
        )
        return bool(rows and rows[0]["cancel_requested"])

    async def enqueue(self, snapshot: Snapshot, *, job_key: str | None, request: dict[str, Any]) -> str:
        """Queue a job; Busy (with the holder's progressId) when an active operation holds `job_key`."""
        rows = await self.transport.call(
            "rag_enqueue_operation", {"p_op": snapshot, "p_job_key": job_key, "p_request": request}
        )
        if not rows:  # the holder ended between the refused insert and the look-up: a retry may pass
            raise Busy(f"{job_key} is busy; retry in a moment")
        if not rows[0]["queued"]:
            raise Busy(
                f"{job_key} has an operation running; stop it or wait for it",
                details={"progressId": rows[0]["operation_id"], "job_key": job_key},
            )
        return str(rows[0]["operation_id"])

    async def claim(self, kinds: list[str], owner: str, *, operation_id: str | None = None) -> ClaimedJob | None:
        """Claim `operation_id`, or else the oldest queued job of `kinds`; None when there is none (or another
        replica claimed it first)."""
        rows = await self.transport.call(
            "rag_claim_operation",
            {"p_kinds": kinds, "p_operation_id": operation_id, "p_owner": owner, "p_owner_lock": self.owner_lock},
        )
        if not rows:
            return None
        row = rows[0]
        return ClaimedJob(str(row["operation_id"]), str(row["kind"]), row["request"], row["operation"])

    async def heartbeat(self, owner: str) -> list[str]:
        """Mark the owner's active operations alive; returns the ids someone asked to stop."""
        rows = await self.transport.call("rag_operation_heartbeat", {"p_owner": owner})
        return [str(row["operation_id"]) for row in rows]

    async def get(self, operation_id: str) -> Snapshot:
        """One operation's snapshot (ended failed first when its owner is gone); NotFound for an unknown id."""
        rows = await self.transport.call(
            "rag_get_operation",
            {"p_operation_id": operation_id, "p_stale_seconds": STALE_OPERATION_S, "p_grace_seconds": OWNER_GRACE_S},
        )
        snapshot: Snapshot = rows[0]["operation"]
        return snapshot

    async def snapshots(self, *, active_only: bool) -> list[Snapshot]:
        """Snapshots of every replica's operations, newest first."""
        rows = await self.transport.call("rag_list_operations", {"p_active_only": active_only, "p_limit": LIST_LIMIT})
        return [row["operation"] for row in rows]

    async def request_cancel(self, operation_id: str) -> StopAnswer:
        """Ask for a stop (a queued job ends at once); NotFound for an unknown id."""
        rows = await self.transport.call("rag_request_cancel", {"p_operation_id": operation_id})
        return StopAnswer(bool(rows[0]["stopping"]), rows[0]["owner"])

    async def recover_interrupted(self) -> list[str]:
        """End the operations of replicas that are gone (failed, with a message saying so); returns their ids."""
        rows = await self.transport.call(
            "rag_recover_interrupted_operations",
            {"p_stale_seconds": STALE_OPERATION_S, "p_keep_seconds": KEEP_ENDED_S, "p_grace_seconds": OWNER_GRACE_S},
        )
        return [str(row["operation_id"]) for row in rows]
