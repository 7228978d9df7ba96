"""The Supabase backend: the real supabase-py client and the real Store, over HTTP.

Test double, and why: PostgREST (Supabase's REST layer) cannot run here, so the test starts a
small HTTP server on 127.0.0.1 that stands in for it. It checks every request the way PostgREST
would see it (POST /rest/v1/rpc/<fn>, `apikey` and `Authorization: Bearer` headers, a JSON
object body) and records it, then answers PostgREST-style: it runs the function in this test's
real Postgres database the way PostgREST does (arguments from the JSON body typed by
`json_to_record` with the function's declared argument types, rows returned as a JSON array)
and renders database errors as PostgREST error bodies ({code, message, details, hint} with its
HTTP status mapping). Nothing of ragserver is faked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from aiohttp import web
from psycopg import sql
from support import search_corpus
from support.schema_history import LAST_RELEASE, build_release
from support.search_corpus import assert_vectors_round_trip, unit_vectors, write_corpus
from support.store_fixtures import create_database, drop_database

from ragserver.config import Settings
from ragserver.domain import Chunk, CodeExample, Document, SourceInfo
from ragserver.errors import InputError, NotFound, SchemaMismatch, Unavailable
from ragserver.store import Store, open_store
from ragserver.store.supabase import SupabaseTransport

SERVICE_KEY = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl"


def _status(sqlstate: str) -> int:
    """PostgREST's SQLSTATE -> HTTP status table (the parts the rag_* functions can hit)."""
    if sqlstate in ("42883", "42P01"):
        return 404
    if sqlstate.startswith(("08", "53")):
        return 503
    if sqlstate.startswith(("P0", "55", "57", "XX")) and sqlstate != "P0001":
        return 500
    return 400


@dataclass
class PostgrestStandIn:
    """The HTTP stand-in for PostgREST, answering from one real database."""

    conninfo: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        fn = request.match_info["fn"]
        body = await request.json()
        self.requests.append({"fn": fn, "body": body, "headers": {k.lower(): v for k, v in request.headers.items()}})
        if request.headers.get("apikey") != SERVICE_KEY:
            return _error(401, "PGRST301", "no or wrong apikey")
        if request.headers.get("Authorization") != f"Bearer {SERVICE_KEY}":
            return _error(401, "PGRST301", "no or wrong bearer token")
        if not request.headers.get("Content-Type", "").startswith("application/json") or not isinstance(body, dict):
            return _error(400, "PGRST102", "expected a JSON object body")
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT p.proargnames[1:p.pronargs], ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t)"
                " FROM pg_proc p WHERE p.proname = %s",
                (fn,),
            )
            found = await cur.fetchone()
            if found is None:
                return _error(404, "PGRST202", f"Could not find the function public.{fn} in the schema cache")
            declared = dict(zip(found[0] or [], found[1], strict=True))
            if unknown := set(body) - set(declared):
                return _error(404, "PGRST202", f"public.{fn} has no parameters {sorted(unknown)}")
            # a subquery row is always a composite, so one-column functions still give {"col": value}
            record = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(k), sql.SQL(declared[k])) for k in body)
            args = sql.SQL(", ").join(sql.SQL("{0} => a.{0}").format(sql.Identifier(k)) for k in body)
            call = sql.SQL("SELECT * FROM {}({})").format(sql.Identifier(fn), args)
            if body:
                call = sql.SQL("SELECT r.* FROM json_to_record(%s::json) AS a({}), LATERAL ({}) r").format(record, call)
            query = sql.SQL("SELECT coalesce(json_agg(x), '[]'::json) FROM ({}) x").format(call)
            try:
                cur = await conn.execute(query, (json.dumps(body),) if body else None)
                rows = (await cur.fetchone())[0]
            except psycopg.Error as exc:
                diag = exc.diag
                return _error(_status(exc.sqlstate or "XX000"), exc.sqlstate, diag.message_primary, diag.message_detail)
        return web.json_response(rows)


def _error(status: int, code: str | None, message: str | None, details: str | None = None) -> web.Response:
    return web.json_response({"code": code, "message": message, "details": details, "hint": None}, status=status)


@asynccontextmanager
async def serve_postgrest(conninfo: str) -> AsyncIterator[tuple[PostgrestStandIn, str]]:
    """The stand-in on a free port of 127.0.0.1 over one database; yields (stand-in, base URL)."""
    stand_in = PostgrestStandIn(conninfo)
    app = web.Application()
    app.router.add_post("/rest/v1/rpc/{fn}", stand_in.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield stand_in, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def postgrest(pg_settings: Settings) -> AsyncIterator[tuple[PostgrestStandIn, str]]:
    async with serve_postgrest(pg_settings.database_url) as served:
        yield served


@pytest_asyncio.fixture(loop_scope="session")
async def supabase_store(postgrest: tuple[PostgrestStandIn, str]) -> AsyncIterator[Store]:
    _, url = postgrest
    async with open_store(Settings(supabase_url=url, supabase_service_key=SERVICE_KEY)) as store:
        yield store


async def test_requests_are_postgrest_rpc_calls(postgrest, supabase_store: Store) -> None:
    stand_in, _ = postgrest
    assert supabase_store.backend == "supabase"
    await supabase_store.list_sources(page=2, per_page=10)
    call = stand_in.requests[-1]
    assert call["fn"] == "rag_list_sources"
    assert call["body"] == {"p_limit": 10, "p_offset": 10, "p_library": None, "p_version": None}
    assert call["headers"]["apikey"] == SERVICE_KEY
    assert call["headers"]["authorization"] == f"Bearer {SERVICE_KEY}"


async def test_round_trip_over_rpc(postgrest, supabase_store: Store) -> None:
    store = supabase_store
    assert store.migration_report.changes == []  # over RPC the schema is checked, nothing applied
    await store.ensure_embedding_space("rpc/model", 3)
    for generation in ("first", "second"):
        run = await store.begin_run(SourceInfo("docs", "Docs", "https://docs.example", tags=["t"]), "crawl")
        page_id = await store.write_document(
            "docs",
            run,
            Document("https://docs.example/a", "A", f"# A\n{generation} generation"),
            [Chunk(0, f"{generation} generation text", ["A"], {"k": 1}, [1.0, 0.0, 0.0])],
            [CodeExample(0, "print('hi')", "python", "greeting", ["A"])],
            "rpc/model",
        )
        assert await store.commit_run("docs", run) == {"pages": 1, "chunks": 1, "code_examples": 1}

    stand_in, _ = postgrest
    write = next(r for r in stand_in.requests if r["fn"] == "rag_write_document")
    assert write["body"]["p_embeddings"] == ["[1.0,0.0,0.0]"], "vectors in pgvector's text form, beside the payload"
    assert "embedding" not in write["body"]["p_payload"]["chunks"][0]
    begin = next(r for r in stand_in.requests if r["fn"] == "rag_begin_run")
    assert begin["body"]["p_owner_lock"] is None, "no sessions over RPC: runs carry no owner lock"

    hits = await store.hybrid_search(
        "generation", [1, 0, 0], "rpc/model", match_count=5, source_id="docs", rrf_k=60, candidates=5
    )
    assert [h.content for h in hits] == ["second generation text"]
    assert (hits[0].vector_rank, hits[0].text_rank, hits[0].page_id) == (1, 1, page_id)
    assert hits[0].heading_path == ["A"] and hits[0].metadata == {"k": 1}
    assert (await store.get_pages([page_id]))[0]["markdown"] == "# A\nsecond generation"
    examples = await store.search_code_examples(
        "greeting", None, None, match_count=5, source_id=None, rrf_k=60, candidates=5
    )
    assert [e.code for e in examples] == ["print('hi')"]
    listing = await store.list_sources()
    assert listing["total"] == 1 and listing["items"][0]["chunk_count"] == 1
    assert await store.embedding_counts() == {"rpc/model": 1}
    assert await store.chunks_missing_embeddings("other/model", 5) == [(hits[0].chunk_id, "second generation text")]
    await store.set_embeddings("other/model", [(hits[0].chunk_id, [0.5, 0.5])])
    assert await store.embedding_counts() == {"other/model": 1, "rpc/model": 1}
    health = await store.health()
    assert health["ok"] and health["schema_ready"] and health["backend"] == "supabase"
    assert await store.recover_interrupted_runs() == 0
    await store.delete_source("docs")
    assert (await store.list_sources())["total"] == 0


async def test_vectors_round_trip_exactly_over_rpc(supabase_store: Store, pg_settings: Settings) -> None:
    """Over RPC the vectors go in pgvector's text form, inside the JSON body."""
    await assert_vectors_round_trip(supabase_store, pg_settings.database_url)


async def test_search_answers_the_same_over_both_transports(store: Store, supabase_store: Store) -> None:
    """One database, one corpus per transport: psycopg (binary vectors) and RPC (text) store the same
    bits and answer every search with the same rows in the same order, scores included."""
    await write_corpus(store, "via-psycopg")
    await write_corpus(supabase_store, "via-rpc")
    queries = unit_vectors(2, seed=5)
    for source_id in ("via-psycopg", "via-rpc", None):
        for text, vector in (("search index", queries[0]), ("event loop", queries[1]), ("fusion", None)):
            model = search_corpus.MODEL if vector is not None else None
            args = {"match_count": 8, "source_id": source_id, "rrf_k": 30, "candidates": 6}
            answers = [await s.hybrid_search(text, vector, model, **args) for s in (store, supabase_store)]
            assert answers[0] and answers[0] == answers[1]
            assert (vector is None) == all(h.similarity is None for h in answers[0])
            examples = [await s.search_code_examples(text, vector, model, **args) for s in (store, supabase_store)]
            assert examples[0] and examples[0] == examples[1]
    written_by = {
        source: [
            (h.content, h.similarity, h.fused_score, h.vector_rank, h.text_rank)
            for h in await store.hybrid_search(
                "search index", queries[0], search_corpus.MODEL, match_count=8, source_id=source, rrf_k=60, candidates=6
            )
        ]
        for source in ("via-psycopg", "via-rpc")
    }
    assert written_by["via-psycopg"] == written_by["via-rpc"], "the corpus written either way answers alike"


async def test_catalog_answers_the_same_over_both_transports(store: Store, supabase_store: Store) -> None:
    """Page listings, page reads and labelled source listings over RPC are the psycopg answers."""
    run = await store.begin_run(
        SourceInfo("docs", "Docs", "https://docs.example", metadata={"library": "Lib"}), "crawl"
    )
    for path in ("a", "b/", "c#part"):
        markdown = f"# Page {path}\n\n" + "words and more words\n" * 40
        await store.write_document("docs", run, Document(f"https://docs.example/{path}", path, markdown), [], [], None)
    await store.commit_run("docs", run)
    for args in ({"section": None, "limit": 2, "offset": 0}, {"section": "/b", "limit": 5, "offset": 0}):
        answers = [await s.list_pages("docs", **args) for s in (store, supabase_store)]
        assert answers[0]["items"] and answers[0] == answers[1]
    for lookup in (
        {"url": "https://docs.example/b"},
        {"url": "https://docs.example/c"},
        {"url": "https://docs.example/a/"},
    ):
        reads = [await s.read_page(**lookup, offset=5, max_chars=50) for s in (store, supabase_store)]
        assert reads[0] == reads[1] and len(reads[0]["content"]) == 50
    labelled = [await s.list_sources(library="lib") for s in (store, supabase_store)]
    assert labelled[0] == labelled[1] and labelled[0]["total"] == 1 and labelled[0]["items"][0]["library"] == "Lib"
    with pytest.raises(NotFound):
        await supabase_store.list_pages("missing", section=None, limit=5, offset=0)
    with pytest.raises(NotFound):
        await supabase_store.read_page(url="https://docs.example/missing", max_chars=10)


async def test_progressive_runs_and_carried_pages_over_rpc(supabase_store: Store) -> None:
    """A first run visible as it writes and kept as partial, then a refresh carrying its page, over RPC."""
    store = supabase_store
    docs = SourceInfo("docs", "Docs", "https://docs.example")
    first = await store.begin_run(docs, "crawl", progressive=True)
    links = ["https://docs.example/b"]
    doc = Document("https://docs.example/a", "A", "# A\nalpha", etag='"v1"', content_hash="h", links=links)
    page_id = await store.write_document("docs", first, doc, [Chunk(0, "alpha text", ["A"])], [], None)
    assert [
        h.content
        for h in await store.hybrid_search("alpha", None, None, match_count=5, source_id="docs", rrf_k=60, candidates=5)
    ] == ["alpha text"]
    await store.fail_run("docs", first, "cancelled", "stopped")
    item = (await store.list_sources())["items"][0]
    assert item["partial"] and item["last_run_status"] == "partial" and item["page_count"] == 1

    assert await store.previous_pages("docs") == [
        {"page_id": page_id, "url": doc.url, "etag": '"v1"', "last_modified": None, "content_hash": "h"}
    ]
    assert await store.page_links(page_id) == links
    refresh = await store.begin_run(docs, "crawl", progressive=True)
    carried = await store.carry_page("docs", refresh, Document(doc.url, "", "", etag='"v1"', carried_from=page_id))
    assert carried is not None and carried["chunks"] == 1
    assert await store.commit_run("docs", refresh) == {"pages": 1, "chunks": 1, "code_examples": 0}
    assert not (await store.list_sources())["items"][0]["partial"]
    await store.delete_source("docs")


async def test_operations_over_rpc(supabase_store: Store) -> None:
    """Replicas over Supabase share operations too: no owner lock (None), the same rows and claims."""
    operations = supabase_store.operations
    assert operations.owner_lock is None
    snapshot = {
        "progressId": "op-rpc",
        "type": "upload",
        "name": "notes.md",
        "status": "running",
        "progress": 40.0,
        "step": "storing",
        "message": "m",
        "counts": {"chunks_stored": 2},
        "result": {},
        "error": None,
        "startedAt": 1_700_000_000.0,
        "updatedAt": 1_700_000_001.5,
    }
    assert await operations.save(snapshot, 1, "replica-a") is False
    assert await operations.get("op-rpc") == snapshot
    queued = await operations.enqueue({"progressId": "job-rpc", "type": "crawl"}, job_key="src", request={"u": 1})
    job = await operations.claim(["crawl"], "replica-b")
    assert job is not None and (job.operation_id, job.request) == (queued, {"u": 1})
    assert (await operations.request_cancel("op-rpc")).stopping
    assert await operations.heartbeat("replica-a") == ["op-rpc"]
    with pytest.raises(NotFound):
        await operations.get("missing")


async def test_errors_over_rpc(supabase_store: Store) -> None:
    with pytest.raises(NotFound):
        await supabase_store.delete_source("missing")
    with pytest.raises(NotFound):
        await supabase_store.commit_run("missing", 1)
    await supabase_store.ensure_embedding_space("m", 2)
    with pytest.raises(InputError):
        await supabase_store.hybrid_search("q", [1, 2, 3], "m", match_count=3, source_id=None, rrf_k=60, candidates=5)


async def test_unmigrated_database_is_unavailable(pg_server) -> None:
    """Migrations never run over RPC; an empty database says to run `ragserver migrate`."""
    name = await create_database(pg_server, template=None)
    try:
        async with serve_postgrest(pg_server.uri(name)) as (_, url):
            settings = Settings(supabase_url=url, supabase_service_key=SERVICE_KEY)
            with pytest.raises(Unavailable, match="ragserver migrate"):
                async with open_store(settings):
                    pass
            store = Store(await SupabaseTransport.connect(url, SERVICE_KEY), backend="supabase")
            try:
                assert not (await store.health())["schema_ready"]
                health = await store.health()
                assert not health["ok"] and health["state"] == "error" and "ragserver migrate" in health["reason"]
            finally:
                await store.transport.close()
    finally:
        await drop_database(pg_server, name)


async def test_a_database_of_an_earlier_release_needs_migrate_over_rpc(pg_server) -> None:
    """Its rag_schema_info predates the recorded checksums: /health still says what to run."""
    name = await create_database(pg_server, template=None)
    try:
        async with await psycopg.AsyncConnection.connect(pg_server.uri(name), autocommit=True) as conn:
            await build_release(conn, LAST_RELEASE)
        async with serve_postgrest(pg_server.uri(name)) as (_, url):
            with pytest.raises(Unavailable, match="pending: 0006_schema_functions"):
                async with open_store(Settings(supabase_url=url, supabase_service_key=SERVICE_KEY)):
                    pass
            store = Store(await SupabaseTransport.connect(url, SERVICE_KEY), backend="supabase")
            try:
                health = await store.health()
                assert health["state"] == "error" and not health["functions_current"], health
                assert "ragserver migrate" in health["reason"] and health["schema_version"] == "0005_security"
            finally:
                await store.transport.close()
    finally:
        await drop_database(pg_server, name)


async def test_stale_functions_and_edited_migration_over_rpc(pg_settings: Settings, postgrest) -> None:
    """Over RPC the server cannot migrate, so /health and start-up say what the database needs:
    `ragserver migrate` for out-of-date functions, and a refusal naming the file for an edited
    released migration."""
    _, url = postgrest
    settings = Settings(supabase_url=url, supabase_service_key=SERVICE_KEY)
    async with await psycopg.AsyncConnection.connect(pg_settings.database_url, autocommit=True) as conn:
        await conn.execute("UPDATE rag_schema_functions SET checksum = 'old' WHERE name = '20_search'")
        with pytest.raises(Unavailable, match=r"functions are out of date \(20_search\).*ragserver migrate"):
            async with open_store(settings):
                pass
        store = Store(await SupabaseTransport.connect(url, SERVICE_KEY), backend="supabase")
        try:
            health = await store.health()
            assert health["state"] == "error" and not health["functions_current"] and not health["schema_mismatch"]
            assert "20_search" in health["reason"] and not (await store.health())["schema_ready"]

            await conn.execute("UPDATE rag_schema_migrations SET checksum = 'edited' WHERE name = '0001_schema'")
            with pytest.raises(SchemaMismatch, match=r"0001_schema\.sql .* edited"):
                async with open_store(settings):
                    pass
            health = await store.health()
            assert health["state"] == "error" and health["schema_mismatch"] and "0001_schema.sql" in health["reason"]
        finally:
            await store.transport.close()


async def test_unreachable_supabase_is_unavailable() -> None:
    settings = Settings(supabase_url="http://127.0.0.1:9", supabase_service_key=SERVICE_KEY)
    with pytest.raises(Unavailable):
        async with open_store(settings):
            pass
