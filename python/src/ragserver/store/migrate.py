"""Versioned SQL migrations (store/migrations/NNNN_name.sql), applied once each and recorded.

Two processes may start at once (server + CLI): a session advisory lock serialises them, and
each migration runs in its own transaction together with its row in rag_schema_migrations, so
a crash never leaves a half-applied migration recorded as done.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

log = logging.getLogger(__name__)

# pg_advisory_lock key reserved for migrations ("ragmigr" in ASCII).
MIGRATION_LOCK = 0x7261676D69677200

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS rag_schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    """One SQL file of the package."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with this version, in the order they apply."""
    folder = resources.files("ragserver.store") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def latest_version() -> str:
    """Name of the newest migration: the schema version this code expects."""
    return available_migrations()[-1].name


async def apply_migrations(conn: AsyncConnection) -> list[str]:
    """Apply the pending migrations on an autocommit connection; returns the names applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(CREATE_TABLE)
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute("SELECT name, checksum FROM rag_schema_migrations")
            done = dict(await cur.fetchall())
        for migration in available_migrations():
            if migration.name in done:
                if done[migration.name] != migration.checksum:
                    log.warning("migration %s changed after it was applied; not re-applied", migration.name)
                continue
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO rag_schema_migrations (name, checksum) VALUES (%s, %s)",
                    (migration.name, migration.checksum),
                )
            log.info("applied migration %s", migration.name)
            applied.append(migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied
