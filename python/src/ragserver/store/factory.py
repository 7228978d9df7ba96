"""open_store: pick the backend from Settings, open it, migrate, and close it all on exit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ragserver.config import Settings
from ragserver.store.embedded import EmbeddedPostgres
from ragserver.store.postgres import PsycopgTransport
from ragserver.store.store import Store
from ragserver.store.transport import Transport

# Room for the HNSW graph of ~100k chunks in memory, and faster index builds.
EMBEDDED_OPTIONS = {"shared_buffers": "256MB", "maintenance_work_mem": "256MB"}


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """DATABASE_URL -> psycopg pool; SUPABASE_URL + key -> RPC; neither -> embedded Postgres.

    The one place that migrates (the Store's `migration_report` says what it applied): over
    Supabase nothing can be applied, so the schema is only checked (`ragserver migrate` with
    DATABASE_URL upgrades it). SchemaMismatch on a database this code cannot run on.
    """
    backend = settings.store_backend
    embedded: EmbeddedPostgres | None = None
    transport: Transport
    if backend == "supabase":
        # imported here: importing the supabase client slows every start that does not use it
        from ragserver.store.supabase import SupabaseTransport

        transport = await SupabaseTransport.connect(settings.supabase_url, settings.supabase_service_key)
    else:
        conninfo = settings.database_url
        if backend == "embedded":
            embedded = EmbeddedPostgres(settings.data_dir / "postgres", options=EMBEDDED_OPTIONS)
            conninfo = await asyncio.to_thread(embedded.start)
        try:
            transport = await PsycopgTransport.connect(conninfo)
        except BaseException:
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)
            raise
    try:
        yield Store(transport, backend=backend, migration_report=await transport.migrate())
    finally:
        await transport.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
