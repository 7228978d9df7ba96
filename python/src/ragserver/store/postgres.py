"""Transport over a psycopg 3 async connection pool (DATABASE_URL, or the embedded server).

Calls are `SELECT * FROM rag_fn(p_x => %(p_x)s, ...)` on autocommit connections, so each call is
one transaction. The process also holds one extra connection with a session advisory lock for
its whole life: runs it starts carry that key, and another process recovering interrupted runs
skips any run whose owner still holds its lock. Session locks need a direct or session-mode
connection string (on Supabase: port 5432, not the transaction pooler on 6543).

Vectors go as pgvector values in its binary form (pgvector's psycopg adapter, registered on each
pool connection), into `vector` and `vector[]` arguments: no text to format here or to parse there.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection, sql
from psycopg.adapt import PyFormat
from psycopg.rows import DictRow, dict_row
from psycopg.types import TypeInfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ragserver.errors import InputError, RagServerError, Unavailable
from ragserver.store.migrate import MigrationReport, apply_migrations
from ragserver.store.transport import Row, VectorArg, VectorsArg, translate_error

POOL_MIN = 1
POOL_MAX = 10
CONNECT_TIMEOUT_S = 30
PING_CONNECT_TIMEOUT_S = 3  # /health gives the whole check 5 s

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]


class PsycopgTransport:
    """rag_* functions over a psycopg pool."""

    def __init__(self, pool: Pool, liveness: AsyncConnection, owner_lock: int, conninfo: str) -> None:
        self._pool = pool
        self._liveness = liveness
        self._conninfo = conninfo
        self._relock = asyncio.Lock()
        self.owner_lock = owner_lock

    @classmethod
    async def connect(cls, conninfo: str, *, max_size: int = POOL_MAX) -> PsycopgTransport:
        """Open the pool and the liveness connection; Unavailable when the database cannot be reached."""
        pool = AsyncConnectionPool(
            conninfo,
            connection_class=AsyncConnection[DictRow],
            min_size=POOL_MIN,
            max_size=max_size,
            open=False,
            name="ragserver",
            check=AsyncConnectionPool.check_connection,
            configure=_register_vector_types,
            # no server-side prepared statements: they break behind transaction poolers (Supabase :6543)
            kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
        )
        owner_lock = secrets.randbits(62)
        try:
            # one plain connection first: it fails fast with libpq's own reason (refused, auth, ...)
            liveness = await _owner_session(conninfo, owner_lock, CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise Unavailable(f"cannot connect to the database: {_first_line(exc)}") from exc
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            await liveness.close()
            raise Unavailable(f"cannot connect to the database: {_first_line(exc)}") from exc
        return cls(pool, liveness, owner_lock, conninfo)

    async def call(self, fn: str, params: dict[str, Any]) -> list[Row]:
        query = sql.SQL("SELECT * FROM {}({})").format(
            sql.Identifier(fn),
            sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder(k, _format(v))) for k, v in params.items()
            ),
        )
        values = {k: _adapt(v) for k, v in params.items()}
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query, values)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        except PoolTimeout as exc:
            raise Unavailable("no database connection available (pool exhausted or database down)") from exc

    async def ping(self) -> None:
        # The liveness connection is this process's own session: when Postgres died it fails at
        # once with libpq's reason, where the pool would wait its timeout for a connection. A
        # session that was lost (Postgres restarted, an admin or a proxy dropped it) is opened
        # again with the owner lock, so the check recovers when the database does.
        if self._liveness.closed or self._liveness.broken:
            await self._reopen_liveness()
            return
        try:
            await self._liveness.execute("SELECT 1")
        except psycopg.Error as exc:
            raise _translate(exc) from exc

    async def _reopen_liveness(self) -> None:
        async with self._relock:
            if not (self._liveness.closed or self._liveness.broken):
                return  # another check reopened it meanwhile
            try:
                liveness = await _owner_session(self._conninfo, self.owner_lock, PING_CONNECT_TIMEOUT_S)
            except psycopg.Error as exc:
                raise _translate(exc) from exc
            await self._liveness.close()
            self._liveness = liveness

    async def migrate(self) -> MigrationReport:
        try:
            async with self._pool.connection() as conn:
                report = await apply_migrations(conn)
            if report.migrations:
                # connections opened before a migration may predate the vector type (a new
                # database): open them again so that each has pgvector's adapter
                await self._pool.drain()
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        except PoolTimeout as exc:
            raise Unavailable("no database connection available for migrations") from exc
        return report

    async def close(self) -> None:
        # release the owner lock now, not whenever the server notices the closed socket
        with contextlib.suppress(psycopg.Error):
            await self._liveness.execute("SELECT pg_advisory_unlock_all()")
        await self._liveness.close()
        await self._pool.close()


async def _register_vector_types(conn: AsyncConnection[DictRow]) -> None:
    """Give a new pool connection pgvector's adapter, once the database has the vector type (an
    unmigrated one has not: migrate() opens the connections again after migrating)."""
    if await TypeInfo.fetch(conn, "vector") is not None:
        await register_vector_async(conn)


def _format(value: Any) -> PyFormat:
    """Vectors binary: left to choose, psycopg would write an array of them in pgvector's text form."""
    return PyFormat.BINARY if isinstance(value, VectorArg | VectorsArg) else PyFormat.AUTO


def _adapt(value: Any) -> Any:
    """A call's argument as psycopg sends it: vectors binary, dicts and lists as jsonb."""
    if isinstance(value, VectorArg):
        return Vector(value.values)
    if isinstance(value, VectorsArg):
        return [None if row is None else Vector(row) for row in value.rows]
    if isinstance(value, dict | list):
        return Jsonb(value)
    return value


async def _owner_session(conninfo: str, owner_lock: int, timeout: int) -> AsyncConnection:
    """A session of its own holding the process's owner lock (the liveness connection)."""
    session = await AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=timeout)
    try:
        await session.execute("SELECT pg_advisory_lock(%s)", (owner_lock,))
    except psycopg.Error:
        await session.close()
        raise
    return session


def _translate(exc: psycopg.Error) -> RagServerError:
    message = exc.diag.message_primary if exc.diag and exc.diag.message_primary else _first_line(exc)
    if exc.sqlstate is None and isinstance(exc, psycopg.OperationalError):
        return Unavailable(f"database unavailable: {message}")
    if exc.sqlstate is None and isinstance(exc, psycopg.DataError):
        return InputError(message)  # refused client-side, e.g. a NUL character in a string
    return translate_error(exc.sqlstate, message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
