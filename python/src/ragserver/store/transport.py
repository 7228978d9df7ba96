"""The one seam between the Store and a database: call a rag_* SQL function, get rows back.

Every read and write of the store is a SQL function (store/functions/), so the Store's
logic exists once and runs over psycopg (`SELECT * FROM fn(...)`) or over Supabase's PostgREST
(`POST /rest/v1/rpc/fn`). Every rag_* function RETURNS TABLE, so both answer a list of dicts.
Parameters are JSON values: str/int/float/bool/None, and dict/list for jsonb arguments; vectors
are VectorArg (a `vector` argument) and VectorsArg (a `vector[]` argument), which each
transport sends in its own form (psycopg: pgvector's binary form; PostgREST: its text form), so
the database reads each vector once and never from JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ragserver.errors import InputError, NotFound, RagServerError, StoreError, Unavailable

if TYPE_CHECKING:
    from ragserver.store.migrate import MigrationReport

Row = dict[str, Any]

NOT_MIGRATED = "the database schema is missing or outdated: run `ragserver migrate`"


@dataclass(frozen=True, slots=True)
class VectorArg:
    """The value of a `vector` argument (a query vector)."""

    values: list[float]


@dataclass(frozen=True, slots=True)
class VectorsArg:
    """The value of a `vector[]` argument: one vector per row, None for a row without one."""

    rows: list[list[float] | None]


class Transport(Protocol):
    """A way to reach the rag_* functions."""

    @property
    def owner_lock(self) -> int | None:
        """The advisory lock key this process holds while it lives (psycopg), or None (RPC has no sessions)."""
        ...

    async def call(self, fn: str, params: dict[str, Any]) -> list[Row]:
        """Run one rag_* function (one transaction) and return its rows."""
        ...

    async def ping(self) -> None:
        """Raise Unavailable, with the driver's own reason, when the session to the database is
        gone; answers at once instead of waiting for a pooled connection (used by /health)."""
        ...

    async def migrate(self) -> MigrationReport:
        """Bring the schema up to date (or, where that cannot be done, check it); SchemaMismatch on a
        database this code cannot run on."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def translate_error(sqlstate: str | None, message: str) -> RagServerError:
    """Map a database error (by SQLSTATE, or a PostgREST code) onto the ragserver error tree.

    The SQL functions raise P0002 for a missing id, 22xxx for bad input (a vector of the wrong
    dimension, a bad count) and 55000 for a run that is no longer running.
    """
    code = sqlstate or ""
    if code == "P0002":
        return NotFound(message)
    if code.startswith("22") or code == "55000":
        return InputError(message)
    if code in {"42883", "42P01", "3F000", "PGRST202", "PGRST205"}:
        return Unavailable(NOT_MIGRATED, details={"cause": message})
    if code.startswith(("08", "57P", "53")):
        return Unavailable(f"database unavailable: {message}")
    return StoreError(f"database error {code}: {message}" if code else f"database error: {message}")
