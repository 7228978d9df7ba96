"""Upgrades: a database made by an earlier release, upgraded by today's code, equals a fresh one.

The old databases are built from the migration files those releases shipped (copied from git
into tests/fixtures/schema_history/) and filled through their own functions; then today's
open_store upgrades them, over DATABASE_URL and on the embedded default. Plus the refusals: an
edited released migration and a newer release's schema, and the manifest that makes editing a
released migration fail these tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from support.api_fixtures import settings_env
from support.schema_history import (
    DIMENSION,
    FIRST_RELEASE,
    LAST_RELEASE,
    MODEL,
    OLD_CODE,
    OLD_NOTE,
    build_release,
    release_files,
    schema_catalog,
    table_contents,
    write_old_data,
)
from support.store_fixtures import FAST_OPTIONS, create_database, drop_database

from ragserver.config import Settings
from ragserver.errors import SchemaMismatch
from ragserver.store import Store, open_store
from ragserver.store.embedded import EmbeddedPostgres
from ragserver.store.migrate import MigrationReport, apply_migrations
from ragserver.store.schema_files import released, shipped_functions, shipped_migrations

# what upgrading a database of any earlier release applies
UPGRADE = MigrationReport(
    ("0006_schema_functions", "0007_incremental_runs", "0008_operations"), tuple(f.name for f in shipped_functions())
)


def test_every_shipped_migration_is_released_at_its_checksum() -> None:
    """Editing a released migration fails here: a shipped file is released once, at its one checksum
    (start-up refuses a database that recorded another one for it)."""
    manifest = released()
    for migration in shipped_migrations():
        assert migration.name in manifest, f"{migration.name}.sql is missing from store/migrations/released.json"
        release = manifest[migration.name]
        assert release.retired is None, f"{migration.name} is retired in released.json but still shipped"
        assert release.checksums == (migration.checksum,), (
            f"store/migrations/{migration.name}.sql differs from its release: never edit a released migration; "
            "add a new one (tables) or change store/functions/ (functions)"
        )
    shipped = {m.name for m in shipped_migrations()}
    assert {name for name, r in manifest.items() if r.retired} == manifest.keys() - shipped


@pytest.mark.parametrize("commit", [FIRST_RELEASE, LAST_RELEASE])
def test_the_manifest_knows_the_releases_of_the_history_fixtures(commit: str) -> None:
    for file in release_files(commit):
        assert file.checksum in released()[file.name].checksums, (commit, file.name)


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_catalog(pg_settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    """The catalog of a database today's code made, with the vector space the old data has."""
    async with open_store(pg_settings) as store:
        await store.ensure_embedding_space(MODEL, DIMENSION)
    async with await psycopg.AsyncConnection.connect(pg_settings.database_url) as conn:
        return await schema_catalog(conn)


@pytest_asyncio.fixture(loop_scope="session")
async def empty_database(pg_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """The URL of a database with nothing in it (dropped afterwards)."""
    name = await create_database(pg_server, template=None)
    try:
        yield pg_server.uri(name)
    finally:
        await drop_database(pg_server, name)


async def old_database(url: str, commit: str) -> dict[str, list[tuple[object, ...]]]:
    """Make the database at `url` as the release at `commit` did, with data; returns its contents."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await build_release(conn, commit)
        await write_old_data(conn)
        return await table_contents(conn)


async def assert_upgraded(url: str, store: Store, contents: dict, fresh: dict) -> None:
    """The upgraded database has a fresh one's schema, the old rows, and today's Store finds them."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        catalog = await schema_catalog(conn)
        assert catalog["functions"] == fresh["functions"]
        assert catalog == fresh
        assert await table_contents(conn) == contents
    health = await store.health()
    assert health["state"] == "ready" and health["functions_current"], health
    hits = await store.hybrid_search(
        "compass", [1.0, 0.0, 0.0, 0.0], MODEL, match_count=5, source_id=None, rrf_k=60, candidates=10
    )
    assert hits[0].content == "The brass compass points north." and hits[0].vector_rank == 1
    assert {h.title.split()[0] for h in hits} == {"second"}, "only the active generation is searchable"
    examples = await store.search_code_examples(
        "kettle", None, None, match_count=5, source_id="old-docs", rrf_k=60, candidates=10
    )
    assert [e.code for e in examples] == [OLD_CODE]
    listing = await store.list_sources()
    counts = {s["source_id"]: (s["page_count"], s["chunk_count"], s["code_example_count"]) for s in listing["items"]}
    assert counts == {"old-docs": (2, 3, 1), "old-notes": (1, 1, 0)}
    assert await store.embedding_counts() == {MODEL: 3}
    assert [c for _, c in await store.chunks_missing_embeddings(MODEL, 5)] == [OLD_NOTE]


@pytest.mark.parametrize("commit", [FIRST_RELEASE, LAST_RELEASE])
async def test_database_url_upgrade_equals_a_fresh_database(commit: str, empty_database: str, fresh_catalog) -> None:
    contents = await old_database(empty_database, commit)
    async with await psycopg.AsyncConnection.connect(empty_database) as conn:
        assert (await schema_catalog(conn))["functions"] != fresh_catalog["functions"], "nothing to upgrade"

    async with open_store(Settings(database_url=empty_database)) as store:
        assert store.migration_report == UPGRADE
        await assert_upgraded(empty_database, store, contents, fresh_catalog)
    async with open_store(Settings(database_url=empty_database)) as store:
        assert store.migration_report == MigrationReport(), "a second migrate is a no-op"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A DATA_DIR outside pytest's tmp_path (see the `pg_server` fixture for why)."""
    folder = Path(tempfile.mkdtemp(prefix="ragserver-upgrade-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def test_embedded_upgrade_on_open_equals_a_fresh_database(data_dir: Path, fresh_catalog) -> None:
    """The default store: the data dir of an earlier release's server, opened by today's."""
    pgdata = data_dir / "postgres"
    earlier = EmbeddedPostgres(pgdata, options=FAST_OPTIONS)
    try:
        contents = await old_database(await asyncio.to_thread(earlier.start), FIRST_RELEASE)
    finally:
        await asyncio.to_thread(earlier.stop)

    settings = Settings(data_dir=data_dir)
    assert settings.store_backend == "embedded"
    async with open_store(settings) as store:
        assert store.migration_report == UPGRADE
        reader = EmbeddedPostgres(pgdata)  # adopts the running server, leaves stopping it to its owner
        await assert_upgraded(await asyncio.to_thread(reader.start), store, contents, fresh_catalog)
        assert not reader.owned
    async with open_store(settings) as store:
        assert store.migration_report == MigrationReport()


async def test_functions_step_drops_what_no_file_defines(pg_settings: Settings, store: Store, fresh_catalog) -> None:
    """A function a file no longer defines (renamed, removed) disappears; /health says the
    functions are out of date until the step runs."""
    url = pg_settings.database_url
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE FUNCTION rag_renamed_long_ago() RETURNS int LANGUAGE sql RETURN 1")
        await conn.execute("UPDATE rag_schema_functions SET checksum = 'older' WHERE name = '30_catalog'")
        health = await store.health()
        assert health["state"] == "error" and not health["functions_current"], health
        assert "30_catalog" in health["reason"] and "ragserver migrate" in health["reason"]

        assert await apply_migrations(conn) == MigrationReport(functions=("30_catalog",))
        assert await schema_catalog(conn) == fresh_catalog
    assert (await store.health())["state"] == "ready"


def tampered(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_an_edited_released_migration_is_refused_before_any_change(empty_database: str) -> None:
    """The old database recorded 0003_search with a checksum no release had: refused, naming the
    file, and nothing of the upgrade applied."""
    await old_database(empty_database, LAST_RELEASE)
    async with await psycopg.AsyncConnection.connect(empty_database, autocommit=True) as conn:
        await conn.execute(
            "UPDATE rag_schema_migrations SET checksum = %s WHERE name = '0003_search'", (tampered("edited"),)
        )
        with pytest.raises(SchemaMismatch, match=r"0003_search\.sql .* edited after it was released"):
            async with open_store(Settings(database_url=empty_database)):
                pass
        cur = await conn.execute("SELECT to_regclass('rag_schema_functions') IS NULL")
        assert await cur.fetchone() == (True,), "a refused database is left as it was"


async def test_a_newer_release_schema_is_refused(pg_settings: Settings) -> None:
    async with await psycopg.AsyncConnection.connect(pg_settings.database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO rag_schema_migrations (name, checksum) VALUES ('0099_future', 'x')")
    with pytest.raises(SchemaMismatch, match=r"migration 0099_future, which this release .* does not know"):
        async with open_store(pg_settings):
            pass


@pytest.mark.slow
def test_migrate_command_refuses_with_the_reason_and_a_non_zero_exit(pg_settings: Settings) -> None:
    with psycopg.connect(pg_settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE rag_schema_migrations SET checksum = %s WHERE name = '0001_schema'", (tampered("x"),))
    env = {**os.environ, **settings_env(pg_settings), "LOG_LEVEL": "warning"}
    ragserver = str(Path(sys.executable).parent / "ragserver")
    result = subprocess.run([ragserver, "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stdout
    assert "0001_schema.sql" in result.stderr and "edited" in result.stderr, result.stderr
