"""Store on a real embedded Postgres: migrations, generations (runs), catalog, vectors per model."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psycopg
import pytest
from support.store_fixtures import create_database, drop_database

from ragserver.config import Settings
from ragserver.domain import Chunk, CodeExample, Document, SourceInfo
from ragserver.errors import InputError, NotFound
from ragserver.store import Store, open_store
from ragserver.store.migrate import MigrationReport, apply_migrations
from ragserver.store.schema_files import shipped_functions, shipped_migrations

MODEL = "test/model-a"


def source(source_id: str = "docs", **extra) -> SourceInfo:
    return SourceInfo(source_id=source_id, title=f"{source_id} title", origin=f"https://{source_id}.example", **extra)


def chunks(*texts: str, vectors: list[list[float]] | None = None) -> list[Chunk]:
    return [
        Chunk(index=i, content=t, heading_path=["Guide", f"Part {i}"], embedding=vectors[i] if vectors else None)
        for i, t in enumerate(texts)
    ]


async def ingest(store: Store, source_id: str, docs: dict[str, list[str]], model: str | None = None) -> int:
    """One committed generation with a page per url; vectors are one-hot per chunk when model is set."""
    run = await store.begin_run(source(source_id), "upload")
    for url, texts in docs.items():
        vectors = [[1.0 if j == i % 3 else 0.0 for j in range(3)] for i in range(len(texts))] if model else None
        await store.write_document(
            source_id, run, Document(url, f"page {url}", "\n\n".join(texts)), chunks(*texts, vectors=vectors), [], model
        )
    await store.commit_run(source_id, run)
    return run


async def contents(store: Store, query: str, source_id: str | None = None) -> list[str]:
    hits = await store.hybrid_search(query, None, None, match_count=50, source_id=source_id, rrf_k=60, candidates=50)
    return sorted(h.content for h in hits)


def everything() -> MigrationReport:
    """What migrating an empty database applies."""
    return MigrationReport(tuple(m.name for m in shipped_migrations()), tuple(f.name for f in shipped_functions()))


async def test_migrations_are_recorded_and_idempotent(pg_server) -> None:
    """Two processes migrating one empty database at once: each step applies exactly once."""
    name = await create_database(pg_server, template=None)
    try:
        url = pg_server.uri(name)
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as one,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as two,
        ):
            first, second = await asyncio.gather(apply_migrations(one), apply_migrations(two))
            assert {first, second} == {MigrationReport(), everything()}
            cur = await one.execute("SELECT name FROM rag_schema_migrations ORDER BY name")
            assert [r[0] for r in await cur.fetchall()] == list(everything().migrations)
            cur = await one.execute("SELECT name, checksum FROM rag_schema_functions ORDER BY name")
            assert await cur.fetchall() == [(f.name, f.checksum) for f in shipped_functions()]
        async with open_store(Settings(database_url=url)) as opened:
            assert opened.migration_report == MigrationReport()
            assert (await opened.health())["schema_ready"]
    finally:
        await drop_database(pg_server, name)


async def test_open_store_reports_migrations_it_applied(pg_server) -> None:
    name = await create_database(pg_server, template=None)
    try:
        async with open_store(Settings(database_url=pg_server.uri(name))) as opened:
            assert opened.migration_report == everything()
            assert opened.migration_report.changes[-1] == f"functions/{shipped_functions()[-1].name}.sql"
    finally:
        await drop_database(pg_server, name)


async def test_vectors_work_right_after_the_first_migration(pg_server) -> None:
    """The pool's connections opened before the migration created the vector type: pgvector's
    adapter must still be on the connection that writes and searches afterwards."""
    name = await create_database(pg_server, template=None)
    try:
        async with open_store(Settings(database_url=pg_server.uri(name))) as opened:
            await ingest(opened, "docs", {"a": ["first vector text", "second vector text"]}, model=MODEL)
            hits = await opened.hybrid_search(
                "zzz", [0.0, 1.0, 0.0], MODEL, match_count=5, source_id=None, rrf_k=60, candidates=5
            )
            assert [h.content for h in hits] == ["second vector text", "first vector text"]
            assert [h.similarity for h in hits] == [pytest.approx(1.0), pytest.approx(0.0)]
    finally:
        await drop_database(pg_server, name)


async def test_round_trip_write_commit_search(store: Store) -> None:
    await store.ensure_embedding_space(MODEL, 3)
    run = await store.begin_run(source("docs", tags=["python"]), "upload")
    doc = Document("https://docs.example/a", "Page A", "# Install\n\nRun pip install ragserver.")
    page_id = await store.write_document(
        "docs",
        run,
        doc,
        chunks(
            "Run pip install ragserver to install it.", "Configure the server port.", vectors=[[1, 0, 0], [0, 1, 0]]
        ),
        [CodeExample(0, "pip install ragserver", "bash", "How to install", ["Install"])],
        MODEL,
    )
    assert await contents(store, "install") == [], "staged rows must be invisible before commit"

    assert await store.commit_run("docs", run) == {"pages": 1, "chunks": 2, "code_examples": 1}
    hits = await store.hybrid_search(
        "install", [0.9, 0.1, 0], MODEL, match_count=5, source_id=None, rrf_k=60, candidates=10
    )
    assert hits[0].content == "Run pip install ragserver to install it."
    assert hits[0].vector_rank == 1 and hits[0].text_rank == 1
    assert hits[0].fused_score == pytest.approx(2 / 61)
    assert hits[0].page_id == page_id and hits[0].url == doc.url and hits[0].title == "Page A"
    assert hits[0].heading_path == ["Guide", "Part 0"]
    assert hits[1].vector_rank == 2 and hits[1].text_rank is None

    pages = await store.get_pages([page_id, 999_999])
    assert pages == [
        {
            "page_id": page_id,
            "source_id": "docs",
            "url": doc.url,
            "title": "Page A",
            "markdown": doc.markdown,
            "metadata": {},
        }
    ]
    examples = await store.search_code_examples(
        "install", None, None, match_count=5, source_id=None, rrf_k=60, candidates=10
    )
    assert [e.code for e in examples] == ["pip install ragserver"]
    assert examples[0].language == "bash" and examples[0].text_rank == 1


async def test_fail_run_keeps_previous_content(store: Store) -> None:
    await ingest(store, "docs", {"a": ["the original text about kittens"]})
    run = await store.begin_run(source("docs"), "recrawl")
    await store.write_document("docs", run, Document("a2", "A2", "puppies"), chunks("new text about puppies"), [], None)
    await store.fail_run("docs", run, "failed", "crawler exploded")

    assert await contents(store, "kittens puppies") == ["the original text about kittens"]
    info = await store.get_source("docs")
    assert info["last_run_status"] == "failed" and info["last_run_error"] == "crawler exploded"
    assert info["chunk_count"] == 1
    await store.fail_run("docs", run, "cancelled", "twice is harmless")  # no longer running: no-op
    with pytest.raises(InputError):
        await store.write_document("docs", run, Document("x", "x", "x"), [], [], None)
    with pytest.raises(InputError):
        await store.fail_run("docs", run, "completed", "not a failure status")


async def test_reingest_replaces_without_duplicates(store: Store) -> None:
    await ingest(store, "docs", {"a": ["alpha one", "alpha two"], "b": ["beta"]}, model=MODEL)
    await ingest(store, "docs", {"a": ["alpha one", "alpha three"]}, model=MODEL)

    assert await contents(store, "alpha beta") == ["alpha one", "alpha three"]
    listing = await store.list_sources()
    assert listing["total"] == 1
    assert listing["items"][0]["page_count"] == 1 and listing["items"][0]["chunk_count"] == 2
    assert await store.embedding_counts() == {MODEL: 2}


async def test_concurrent_run_of_same_source_keeps_staged_rows(store: Store) -> None:
    """Committing one run drops older generations, not another run still being written."""
    slow = await store.begin_run(source("docs"), "crawl")
    await store.write_document("docs", slow, Document("s", "s", "s"), chunks("slow crawl text"), [], None)
    await ingest(store, "docs", {"f": ["fast upload text"]})
    assert await store.commit_run("docs", slow) == {"pages": 1, "chunks": 1, "code_examples": 0}
    assert await contents(store, "text") == ["slow crawl text"]


async def test_commit_and_fail_errors(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.commit_run("nope", 1)
    run = await ingest(store, "docs", {"a": ["text"]})
    with pytest.raises(InputError):
        await store.commit_run("docs", run)  # already completed
    with pytest.raises(NotFound):
        await store.fail_run("docs", run + 100, "failed", "x")
    with pytest.raises(InputError):
        await store.begin_run(source(""), "upload")


async def test_recover_interrupted_runs(pg_settings: Settings, store: Store) -> None:
    await ingest(store, "docs", {"a": ["kept content"]})
    async with open_store(pg_settings) as crashed:
        run = await crashed.begin_run(source("docs"), "crawl")
        await crashed.write_document("docs", run, Document("b", "b", "b"), chunks("staged content"), [], None)
        alive = await crashed.begin_run(source("other"), "crawl")
        assert await store.recover_interrupted_runs() == 0, "a live process's runs are not interrupted"
    # the owner went away without commit or fail (its liveness lock is released with its connection)
    assert await store.recover_interrupted_runs() == 2
    assert await store.recover_interrupted_runs() == 0
    assert (await store.get_source("docs"))["last_run_status"] == "failed"
    assert (await store.get_source("other"))["last_run_id"] == alive
    assert await contents(store, "content") == ["kept content"]


async def test_embedding_models_coexist(store: Store) -> None:
    """Vectors record their model; search uses the asked model's vectors; dimensions may differ."""
    await store.ensure_embedding_space("small", 2)
    await store.ensure_embedding_space("small", 2)  # idempotent
    await store.ensure_embedding_space("wide", 4)
    run = await store.begin_run(source("docs"), "upload")
    await store.write_document(
        "docs", run, Document("a", "a", "a"), chunks("first", "second", vectors=[[1, 0], [0, 1]]), [], "small"
    )
    await store.commit_run("docs", run)
    assert await store.chunks_missing_embeddings("small", 10) == []
    missing = await store.chunks_missing_embeddings("wide", 10)
    assert [text for _, text in missing] == ["first", "second"]

    ids = {text: chunk_id for chunk_id, text in missing}
    await store.set_embeddings("wide", [(ids["first"], [0, 0, 0, 1]), (ids["second"], [0, 0, 1, 0])])
    assert await store.embedding_counts() == {"small": 2, "wide": 2}
    assert await store.chunks_missing_embeddings("wide", 10) == []

    async def top(vector: list[float], model: str) -> str:
        hits = await store.hybrid_search("zzz", vector, model, match_count=1, source_id=None, rrf_k=60, candidates=5)
        return hits[0].content

    assert await top([1, 0], "small") == "first"
    assert await top([0, 0, 1, 0], "wide") == "second"
    assert await top([0, 0, 0, 1], "wide") == "first"

    with pytest.raises(InputError):
        await store.hybrid_search("q", [1, 0, 0], "small", match_count=1, source_id=None, rrf_k=60, candidates=5)
    with pytest.raises(InputError):
        await store.set_embeddings("small", [(ids["first"], [1, 0, 0])])
    with pytest.raises(InputError):
        await store.ensure_embedding_space("small", 3)
    await store.set_embeddings("wide", [(10_000_000, [1, 0, 0, 0])])  # deleted chunk: skipped


async def test_write_rejects_bad_vectors(store: Store) -> None:
    await store.ensure_embedding_space(MODEL, 3)
    run = await store.begin_run(source("docs"), "upload")
    doc = Document("a", "a", "a")
    with pytest.raises(InputError):
        await store.write_document("docs", run, doc, chunks("x", vectors=[[1, 0]]), [], MODEL)
    with pytest.raises(InputError):
        await store.write_document("docs", run, doc, chunks("x", vectors=[[1, 0, 0]]), [], None)
    with pytest.raises(InputError):
        await store.write_document("docs", run, doc, chunks("x", vectors=[[float("nan"), 0, 0]]), [], MODEL)
    # an unknown model gets its space (and index) on first write
    await store.write_document("docs", run, doc, chunks("x", vectors=[[1, 0, 0, 0, 0]]), [], "new/model")
    assert (await store.health())["embedding_spaces"] == [
        {"model": "new/model", "dimension": 5},
        {"model": MODEL, "dimension": 3},
    ]


async def test_delete_source_cascades(store: Store) -> None:
    await ingest(store, "docs", {"a": ["doomed text"]}, model=MODEL)
    await ingest(store, "keep", {"k": ["kept text"]}, model=MODEL)
    await store.delete_source("docs")
    assert await contents(store, "text") == ["kept text"]
    assert await store.embedding_counts() == {MODEL: 1}
    with pytest.raises(NotFound):
        await store.get_source("docs")
    with pytest.raises(NotFound):
        await store.delete_source("docs")


async def test_list_sources_counts_and_pages(store: Store) -> None:
    for name in ("s1", "s2", "s3"):
        await ingest(store, name, {f"{name}-a": ["one", "two"], f"{name}-b": ["three"]})
    run = await store.begin_run(source("s4"), "crawl")  # first run still going: listed, no content yet
    first = await store.list_sources(page=1, per_page=2)
    second = await store.list_sources(page=2, per_page=2)
    assert first["total"] == second["total"] == 4
    items = first["items"] + second["items"]
    assert [i["source_id"] for i in items] == ["s4", "s3", "s2", "s1"]
    assert items[0]["last_run_status"] == "running" and items[0]["last_run_id"] == run
    assert (items[0]["page_count"], items[0]["chunk_count"]) == (0, 0)
    s1 = items[3]
    assert (s1["page_count"], s1["chunk_count"], s1["code_example_count"]) == (2, 3, 0)
    assert s1["last_run_status"] == "completed" and s1["origin"] == "https://s1.example"
    assert isinstance(s1["created_at"], str) and isinstance(s1["last_run_at"], str)
    assert (await store.list_sources(page=9))["items"] == []
    with pytest.raises(InputError):
        await store.list_sources(per_page=0)


async def test_health_and_schema(store: Store) -> None:
    health = await store.health()
    assert health["ok"] and health["schema_ready"] and health["backend"] == "postgres"
    assert health["schema_version"] == shipped_migrations()[-1].name
    assert health["functions_current"] and not health["schema_mismatch"] and health["reason"] == ""
    assert (await store.health())["schema_ready"]


async def test_concurrent_writes_into_one_run(store: Store) -> None:
    """Writers of one run share its row lock without deadlocking; commit waits for them."""
    await store.ensure_embedding_space(MODEL, 3)
    run = await store.begin_run(source("docs"), "crawl")

    async def write(i: int) -> int:
        text = f"parallel document {i}"
        return await store.write_document(
            "docs", run, Document(f"u{i}", f"t{i}", text), chunks(text, vectors=[[1, 0, 0]]), [], MODEL
        )

    page_ids = await asyncio.gather(*(write(i) for i in range(12)))
    assert len(set(page_ids)) == 12
    assert await store.commit_run("docs", run) == {"pages": 12, "chunks": 12, "code_examples": 0}


def test_store_imports_no_services_or_ml() -> None:
    """store is SQL only: importing it pulls in no torch, FastAPI or ragserver service."""
    code = (
        "import sys, ragserver.store\n"
        "bad = {'torch', 'fastapi', 'sentence_transformers', 'transformers'}\n"
        "bad |= {m for m in sys.modules if m.split('.')[:2] in (['ragserver', p] for p in "
        "('api', 'app', 'ingest', 'crawl', 'search', 'ml', 'progress', 'cli'))}\n"
        "print(sorted(bad & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


async def test_health_recovers_when_the_session_was_dropped(pg_settings: Settings, store: Store) -> None:
    """An admin (or a proxy, or a Postgres restart) drops every session: /health reports it once
    with the server's reason, then reopens its own session and is ready again, like the pool."""
    assert (await store.health())["state"] == "ready"
    async with await psycopg.AsyncConnection.connect(pg_settings.database_url, autocommit=True) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    dropped = await store.health()
    assert dropped["state"] == "error" and dropped["reason"].startswith("database unavailable:"), dropped
    recovered = await store.health()
    assert recovered["state"] == "ready", recovered
    async with await psycopg.AsyncConnection.connect(pg_settings.database_url, autocommit=True) as admin:
        locks = await (
            await admin.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).fetchone()
    assert locks == (1,)  # the owner lock is held again by the new session
