"""Transport over Supabase: the supabase-py client calling the rag_* functions with `.rpc()`.

PostgREST runs each RPC in its own transaction, like one psycopg call. There are no sessions,
so runs started here carry no owner lock (recovery uses their heartbeat instead), and
migrations cannot run here: `ragserver migrate` with DATABASE_URL set to the project's
connection string applies them; `rag_schema_info` tells /health which version is there.

Vectors go in pgvector's text form inside the JSON body (PostgREST types each argument by the
function's declaration, so Postgres reads a `vector[]` of text, once). Formatting a page of
vectors is CPU work that grows with the page, so it runs in a thread, not on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pgvector import Vector
from postgrest.exceptions import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from ragserver.errors import ConfigError, StoreError, Unavailable
from ragserver.store.migrate import MigrationReport
from ragserver.store.schema_check import assess_info
from ragserver.store.transport import Row, VectorArg, VectorsArg, translate_error

RPC_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0


class SupabaseTransport:
    """rag_* functions over PostgREST RPC."""

    owner_lock: int | None = None

    def __init__(self, client: AsyncClient, http: httpx.AsyncClient) -> None:
        self._client = client
        self._http = http

    @classmethod
    async def connect(cls, url: str, service_key: str) -> SupabaseTransport:
        """Build the client; no request is made until the first call."""
        # No automatic retries: a retried write_document would store a page twice.
        http = httpx.AsyncClient(timeout=httpx.Timeout(RPC_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        options = AsyncClientOptions(
            httpx_client=http,
            postgrest_client_retry=False,
            auto_refresh_token=False,
            persist_session=False,
        )
        try:
            client = await acreate_client(url, service_key, options)
        except Exception as exc:  # the client validates URL and key with its own exception types
            await http.aclose()
            raise ConfigError(f"SUPABASE_URL / SUPABASE_SERVICE_KEY rejected: {exc}") from exc
        return cls(client, http)

    async def call(self, fn: str, params: dict[str, Any]) -> list[Row]:
        if any(isinstance(value, VectorsArg) for value in params.values()):
            body = await asyncio.to_thread(_json_arguments, params)
        else:
            body = _json_arguments(params)
        try:
            response = await self._client.rpc(fn, body).execute()
        except APIError as exc:
            raise translate_error(exc.code, exc.message or str(exc)) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"Supabase unreachable: {type(exc).__name__}: {exc}") from exc
        data = response.data
        answer = data if isinstance(data, list) else [] if data is None else [data]
        rows = [row for row in answer if isinstance(row, dict)]
        if len(rows) != len(answer):  # every rag_* function RETURNS TABLE: rows are JSON objects
            raise StoreError(f"{fn} over RPC answered something other than rows: {str(data)[:200]}")
        return rows

    async def ping(self) -> None:
        """Nothing to check: RPC over HTTP holds no session, and each call reports its own failure."""

    async def migrate(self) -> MigrationReport:
        """Nothing is applied over RPC: check the schema instead of pretending (SchemaMismatch on one
        this code cannot run on, Unavailable on one that needs `ragserver migrate`)."""
        rows = await self.call("rag_schema_info", {})
        state = assess_info(rows[0] if rows else {})
        state.raise_if_mismatch()
        if not state.ready:
            raise Unavailable(state.reason)
        return MigrationReport()

    async def close(self) -> None:
        await self._http.aclose()


def _vector_text(values: list[float]) -> str:
    """pgvector's text form, '[0.1,0.2]', of the float32 values the database will store (the
    same bits the binary form of the psycopg path carries)."""
    return Vector(values).to_text()


def _json_arguments(params: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments as the JSON body: vectors in their text form, everything else as it is."""
    body: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, VectorArg):
            body[name] = _vector_text(value.values)
        elif isinstance(value, VectorsArg):
            body[name] = [None if row is None else _vector_text(row) for row in value.rows]
        else:
            body[name] = value
    return body
