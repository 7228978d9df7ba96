"""The knowledge base in Postgres: `async with open_store(settings) as store: ...`.

Backends: DATABASE_URL (psycopg pool), SUPABASE_URL + SUPABASE_SERVICE_KEY (RPC), or an embedded
Postgres under DATA_DIR/postgres. SQL only: no torch, no FastAPI, no ragserver services.
"""

from ragserver.store.factory import open_store
from ragserver.store.store import Store

__all__ = ["Store", "open_store"]
