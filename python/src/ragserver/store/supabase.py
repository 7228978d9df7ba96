"""Transport over Supabase: the supabase-py client calling the rag_* functions with `.rpc()`.

PostgREST runs each RPC in its own transaction, like one psycopg call. There are no sessions,
so runs started here carry no owner lock (recovery uses their heartbeat instead), and
migrations cannot run here: `ragserver migrate` with DATABASE_URL set to the project's
connection string applies them; `rag_schema_info` tells /health which version is there.
"""

from __future__ import annotations

from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from ragserver.errors import ConfigError, StoreError, Unavailable
from ragserver.store.migrate import MigrationReport
from ragserver.store.schema_check import assess_info
from ragserver.store.transport import Row, translate_error

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
        try:
            response = await self._client.rpc(fn, params).execute()
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
