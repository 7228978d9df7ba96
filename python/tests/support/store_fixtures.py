"""Database fixtures (owned by the store room): one real embedded Postgres per test session.

- `pg_server`   (session) the EmbeddedPostgres, started in a temp dir, stopped at session end.
- `pg_settings` (function) Settings whose DATABASE_URL points at a fresh, migrated database of
                its own (cloned from a template database in a few ms); data_dir is tmp_path.
                Hand it to create_app / IngestService tests.
- `store`       (function) an open Store on that database: `async def test_x(store): ...`.

Durability is switched off on this server (fsync, synchronous_commit): tests never survive
a crash anyway, and it keeps each test's database cheap.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from ragserver.config import Settings
from ragserver.store import Store, open_store
from ragserver.store.embedded import EmbeddedPostgres
from ragserver.store.migrate import apply_migrations

TEMPLATE_DB = "ragserver_template"
FAST_OPTIONS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """The session's Postgres 18 + pgvector server (unix socket only).

    Not under pytest's tmp_path: as root, Postgres runs as another user that must traverse the
    data dir's parents, and every pytest session resets /tmp/pytest-of-<user> to mode 0700.
    """
    folder = Path(tempfile.mkdtemp(prefix="ragserver-test-pg-"))
    server = EmbeddedPostgres(folder / "postgres", options=FAST_OPTIONS)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_template(pg_server: EmbeddedPostgres) -> str:
    """A migrated database that every test database is cloned from."""
    async with await psycopg.AsyncConnection.connect(pg_server.uri(), autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    async with await psycopg.AsyncConnection.connect(pg_server.uri(TEMPLATE_DB), autocommit=True) as conn:
        await apply_migrations(conn)
    async with await psycopg.AsyncConnection.connect(pg_server.uri(), autocommit=True) as admin:
        # no connections (autovacuum included) may touch a template while it is being cloned
        await admin.execute(f"ALTER DATABASE {TEMPLATE_DB} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
    return TEMPLATE_DB


async def create_database(server: EmbeddedPostgres, *, template: str | None) -> str:
    """A new empty (template None) or cloned database; returns its name."""
    name = f"ragtest_{next(_db_numbers)}"
    clause = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
    async with await psycopg.AsyncConnection.connect(server.uri(), autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name}{clause}")
    return name


async def drop_database(server: EmbeddedPostgres, name: str) -> None:
    async with await psycopg.AsyncConnection.connect(server.uri(), autocommit=True) as admin:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest_asyncio.fixture(loop_scope="session")
async def pg_settings(pg_server: EmbeddedPostgres, pg_template: str, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings on a fresh migrated database of this test (dropped afterwards)."""
    name = await create_database(pg_server, template=pg_template)
    try:
        yield Settings(database_url=pg_server.uri(name), data_dir=tmp_path / "data")
    finally:
        await drop_database(pg_server, name)


@pytest_asyncio.fixture(loop_scope="session")
async def store(pg_settings: Settings) -> AsyncIterator[Store]:
    """An open Store on this test's own database."""
    async with open_store(pg_settings) as opened:
        yield opened
