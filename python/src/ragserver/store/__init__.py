"""The knowledge base in Postgres: `async with open_store(settings) as store: ...`.

Backends: DATABASE_URL (psycopg pool), SUPABASE_URL + SUPABASE_SERVICE_KEY (RPC), or an embedded
Postgres under DATA_DIR/postgres. SQL only: no torch, no FastAPI, no ragserver services.

Schema: open_store brings the database to this code's schema (over Supabase it only checks it).
Tables, indexes and data changes go in a new versioned migration, store/migrations/NNNN_name.sql,
recorded in store/migrations/released.json, and are never edited once released; the rag_*
functions live in store/functions/ and are re-applied whenever they change. Details in
ragserver.store.migrate.
"""

from ragserver.store.factory import open_store
from ragserver.store.migrate import MigrationReport
from ragserver.store.store import PageRows, SourcePage, Store, StoreHealth

__all__ = ["MigrationReport", "PageRows", "SourcePage", "Store", "StoreHealth", "open_store"]
