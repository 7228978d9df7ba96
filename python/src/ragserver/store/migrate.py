"""Bring a database to this code's schema: versioned migrations, then the repeatable functions.

Why two kinds: a table cannot be re-created, so its changes are versioned and applied once; a
function can, so its SQL is re-applied whenever it changes and an upgraded database runs
exactly the functions a fresh one does (an edited function never goes stale in old databases).

How to change the schema:
- Tables, indexes, data: add store/migrations/NNNN_name.sql (the next number) and its entry in
  store/migrations/released.json (its sha256). Never edit a released migration: the tests fail
  when a shipped file's checksum is not the manifest's latest, and start-up refuses a database
  that recorded a checksum no release had. A new table needs row level security there too.
- Functions (and the composite types they use): edit or add store/functions/NN_name.sql
  (applied in name order; 90_privileges.sql last). Renamed, removed and re-signatured functions
  and changed types need nothing more: the step first drops every rag_* function and composite
  type that no table or index depends on.

Two processes may start at once (server + CLI): a session advisory lock serialises them. Each
migration runs in its own transaction together with its row in rag_schema_migrations, and the
function step runs in one transaction with its rows in rag_schema_functions, so a crash never
leaves a half-applied step recorded as done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

from ragserver.errors import SchemaMismatch
from ragserver.store.schema_check import mismatch, stale_functions
from ragserver.store.schema_files import shipped_functions, shipped_migrations

log = logging.getLogger(__name__)

# pg_advisory_lock key reserved for migrations ("ragmigr" in ASCII).
MIGRATION_LOCK = 0x7261676D69677200

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS rag_schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

# The repeatable objects to drop before the function files are re-applied: the rag_* routines
# and composite types (the files create both), except those something else depends on (a table
# column, an index, a generated column: rag_heading_text) and, in turn, whatever those kept ones
# depend on. Internal dependencies (a type's array type and relation) do not keep anything.
DROPPABLE = r"""
WITH RECURSIVE rag (classid, oid) AS (
    SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p
    WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'rag\_%' AND p.prokind IN ('f', 'p')
    UNION ALL
    SELECT 'pg_type'::regclass, t.oid FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid
    WHERE t.typnamespace = current_schema()::regnamespace AND t.typname LIKE 'rag\_%' AND c.relkind = 'c'
), kept (classid, oid) AS (
    SELECT d.refclassid, d.refobjid FROM pg_depend d JOIN rag r ON (r.classid, r.oid) = (d.refclassid, d.refobjid)
    WHERE d.deptype NOT IN ('i', 'e') AND (d.classid, d.objid) NOT IN (SELECT classid, oid FROM rag)
    UNION
    SELECT d.refclassid, d.refobjid FROM pg_depend d
    JOIN kept k ON (k.classid, k.oid) = (d.classid, d.objid)
    JOIN rag r ON (r.classid, r.oid) = (d.refclassid, d.refobjid)
)
SELECT r.classid = 'pg_type'::regclass,
       CASE WHEN r.classid = 'pg_type'::regclass THEN r.oid::regtype::text ELSE r.oid::regprocedure::text END
FROM rag r WHERE (r.classid, r.oid) NOT IN (SELECT classid, oid FROM kept) ORDER BY 1, 2
"""


@dataclass(frozen=True)
class MigrationReport:
    """What bringing the database up to date did."""

    #: versioned migrations applied now
    migrations: tuple[str, ...] = ()
    #: function files whose change made the function step run (empty: they were current)
    functions: tuple[str, ...] = ()

    @property
    def changes(self) -> list[str]:
        """Everything applied, as paths under store/ for a person to read."""
        return [*self.migrations, *(f"functions/{name}.sql" for name in self.functions)]


async def apply_migrations(conn: AsyncConnection[Any]) -> MigrationReport:
    """Migrate on an autocommit connection; SchemaMismatch, before any change, on a database
    this code cannot run on."""
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(CREATE_TABLE)
        applied = await _recorded(conn, "rag_schema_migrations")
        refusal = mismatch(applied)
        if refusal:
            raise SchemaMismatch(refusal)
        pending = [m for m in shipped_migrations() if m.name not in applied]
        for migration in pending:
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO rag_schema_migrations (name, checksum) VALUES (%s, %s)",
                    (migration.name, migration.checksum),
                )
            log.info("applied migration %s", migration.name)
        return MigrationReport(migrations=tuple(m.name for m in pending), functions=await _apply_functions(conn))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


async def _apply_functions(conn: AsyncConnection[Any]) -> tuple[str, ...]:
    """Re-apply every function file when any differs from the recorded ones; returns those that did."""
    changed = stale_functions(await _recorded(conn, "rag_schema_functions"))
    if not changed:
        return ()
    async with conn.transaction():
        async with conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(DROPPABLE)
            droppable = await cur.fetchall()
        # routines first: they are what depends on the types
        for is_type, statement in ((False, "DROP ROUTINE {}"), (True, "DROP TYPE {}")):
            names = [sql.SQL(name) for of_type, name in droppable if of_type is is_type]
            if names:
                await conn.execute(sql.SQL(statement).format(sql.SQL(", ").join(names)))
        for file in shipped_functions():
            await conn.execute(file.sql.encode())
        await conn.execute("DELETE FROM rag_schema_functions")
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO rag_schema_functions (name, checksum) VALUES (%s, %s)",
                [(file.name, file.checksum) for file in shipped_functions()],
            )
    log.info("applied the SQL functions (changed: %s)", ", ".join(changed))
    return changed


async def _recorded(conn: AsyncConnection[Any], table: str) -> dict[str, str]:
    """name -> checksum rows of a record table."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(sql.SQL("SELECT name, checksum FROM {}").format(sql.Identifier(table)))
        return {str(name): str(checksum) for name, checksum in await cur.fetchall()}
