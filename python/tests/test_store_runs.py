"""Progressive and partial runs, and pages carried into a new run, on a real embedded Postgres."""

from __future__ import annotations

import psycopg
import pytest

from ragserver.config import Settings
from ragserver.domain import Chunk, CodeExample, Document, SourceInfo
from ragserver.errors import InputError
from ragserver.store import Store

MODEL = "test/model-a"
OTHER_MODEL = "test/model-b"


def docs_source() -> SourceInfo:
    return SourceInfo("docs", "Docs", "https://docs.example")


def page(path: str, text: str, **fields: object) -> Document:
    return Document(f"https://docs.example/{path}", path, f"# {path}\n\n{text}", **fields)  # type: ignore[arg-type]


async def write(store: Store, run: int, path: str, text: str, **fields: object) -> int:
    chunk = Chunk(0, text, [path], embedding=[1.0, 0.0, 0.0])
    return await store.write_document("docs", run, page(path, text, **fields), [chunk], [], MODEL)


async def found(store: Store, text: str) -> list[str]:
    hits = await store.hybrid_search(text, None, None, match_count=10, source_id="docs", rrf_k=60, candidates=20)
    return sorted(h.content for h in hits)


async def source_row(store: Store) -> dict:
    return (await store.list_sources())["items"][0]


async def test_a_progressive_run_is_searchable_as_it_writes_and_counted_live(store: Store) -> None:
    run = await store.begin_run(docs_source(), "crawl", progressive=True)
    await write(store, run, "a", "alpha written first")
    assert await found(store, "alpha") == ["alpha written first"], "searchable before the commit"
    item = await source_row(store)
    assert item["active_run_id"] == run and item["partial"] and item["last_run_status"] == "running"
    assert (item["page_count"], item["chunk_count"]) == (1, 1)
    await write(store, run, "b", "beta written second")
    assert (await source_row(store))["page_count"] == 2
    assert await store.commit_run("docs", run) == {"pages": 2, "chunks": 2, "code_examples": 0}
    item = await source_row(store)
    assert not item["partial"] and item["last_run_status"] == "completed" and item["page_count"] == 2


@pytest.mark.parametrize("status", ["failed", "cancelled"])
async def test_a_progressive_run_that_ends_early_keeps_its_pages_as_partial(store: Store, status: str) -> None:
    run = await store.begin_run(docs_source(), "crawl", progressive=True)
    await write(store, run, "a", "alpha kept")
    await store.fail_run("docs", run, status, "stopped halfway")
    item = await source_row(store)
    assert item["partial"] and item["last_run_status"] == "partial" and item["last_run_error"] == "stopped halfway"
    assert (item["page_count"], item["chunk_count"], item["active_run_id"]) == (1, 1, run)
    assert await found(store, "alpha") == ["alpha kept"]

    refresh = await store.begin_run(docs_source(), "crawl", progressive=True)  # the source has content: staged
    await write(store, refresh, "a", "alpha again")
    await write(store, refresh, "b", "beta at last")
    assert await found(store, "alpha") == ["alpha kept"], "the partial content answers until the refresh commits"
    await store.commit_run("docs", refresh)
    assert await found(store, "alpha beta") == ["alpha again", "beta at last"]
    assert not (await source_row(store))["partial"]


async def test_a_progressive_run_that_wrote_nothing_leaves_no_content(store: Store) -> None:
    run = await store.begin_run(docs_source(), "crawl", progressive=True)
    await store.fail_run("docs", run, "failed", "no page could be crawled")
    item = await source_row(store)
    assert item["active_run_id"] is None and item["last_run_status"] == "failed" and not item["partial"]
    assert (await store.begin_run(docs_source(), "crawl", progressive=True)) > run  # the next one is progressive
    assert (await source_row(store))["partial"]


async def test_a_staged_run_is_not_visible_and_a_failed_one_leaves_the_content(store: Store) -> None:
    first = await store.begin_run(docs_source(), "crawl", progressive=True)
    await write(store, first, "a", "alpha first")
    await store.commit_run("docs", first)
    staged = await store.begin_run(docs_source(), "crawl", progressive=True)
    await write(store, staged, "a", "alpha staged")
    assert await found(store, "alpha") == ["alpha first"]
    await store.fail_run("docs", staged, "failed", "broke")
    assert await found(store, "alpha") == ["alpha first"]
    item = await source_row(store)
    assert item["last_run_status"] == "failed" and item["active_run_id"] == first and not item["partial"]


async def test_recovery_keeps_a_progressive_run_of_a_dead_process_as_partial(
    store: Store, pg_settings: Settings
) -> None:
    run = await store.begin_run(docs_source(), "crawl", progressive=True)
    await write(store, run, "a", "alpha before the crash")
    async with await psycopg.AsyncConnection.connect(pg_settings.database_url, autocommit=True) as conn:
        await conn.execute("UPDATE rag_runs SET owner_lock = 42 WHERE run_id = %s", (run,))  # a lock nobody holds
    assert await store.recover_interrupted_runs() == 1
    item = await source_row(store)
    assert item["partial"] and item["last_run_status"] == "partial" and item["page_count"] == 1
    assert await found(store, "alpha") == ["alpha before the crash"]


async def test_a_carried_page_brings_its_chunks_vectors_and_code_without_a_write(store: Store) -> None:
    await store.ensure_embedding_space(MODEL, 3)
    await store.ensure_embedding_space(OTHER_MODEL, 2)
    first = await store.begin_run(docs_source(), "crawl")
    links = ["https://docs.example/b", "https://docs.example/c"]
    fields = {"etag": '"v1"', "last_modified": "Tue, 01 Dec 2026 10:00:00 GMT", "content_hash": "h1", "links": links}
    chunk_list = [Chunk(0, "gamma one", ["a"], embedding=[1.0, 0.0, 0.0]), Chunk(1, "gamma two", ["a"])]
    code = [CodeExample(0, "print('gamma')", "python", "gamma code", ["a"])]
    old_page = await store.write_document("docs", first, page("a", "gamma", **fields), chunk_list, code, MODEL)
    await store.write_document("docs", first, page("gone", "delta"), [Chunk(0, "delta")], [], None)
    await store.commit_run("docs", first)
    [second_chunk] = [i for i, text in await store.chunks_missing_embeddings(MODEL, 5) if text == "gamma two"]
    await store.set_embeddings(OTHER_MODEL, [(second_chunk, [0.0, 1.0])])

    previous = {p["url"]: p for p in await store.previous_pages("docs")}
    assert previous["https://docs.example/a"] == {
        "page_id": old_page,
        "url": "https://docs.example/a",
        "etag": '"v1"',
        "last_modified": "Tue, 01 Dec 2026 10:00:00 GMT",
        "content_hash": "h1",
    }
    assert await store.page_links(old_page) == links

    refresh = await store.begin_run(docs_source(), "crawl")
    carried_doc = Document(previous["https://docs.example/a"]["url"], "", "", etag='"v2"', carried_from=old_page)
    carried = await store.carry_page("docs", refresh, carried_doc)
    assert carried is not None and (carried["chunks"], carried["code_examples"]) == (2, 1)
    assert await store.commit_run("docs", refresh) == {"pages": 1, "chunks": 2, "code_examples": 1}

    assert await store.embedding_counts() == {MODEL: 1, OTHER_MODEL: 1}, "each model's vectors came along"
    hits = await store.hybrid_search(
        "gamma", [1.0, 0.0, 0.0], MODEL, match_count=5, source_id="docs", rrf_k=60, candidates=5
    )
    assert [h.content for h in hits] == ["gamma one", "gamma two"] and hits[0].vector_rank == 1
    assert hits[0].page_id == carried["page_id"]
    examples = await store.search_code_examples(
        "gamma", None, None, match_count=5, source_id="docs", rrf_k=60, candidates=5
    )
    assert [e.code for e in examples] == ["print('gamma')"]
    [now] = await store.previous_pages("docs")
    assert (now["etag"], now["last_modified"], now["content_hash"]) == ('"v2"', None, "h1")
    assert await store.page_links(carried["page_id"]) == links, "links kept when none came with the carry"


async def test_carrying_needs_a_stored_page(store: Store) -> None:
    run = await store.begin_run(docs_source(), "crawl")
    assert await store.carry_page("docs", run, Document("https://docs.example/a", "", "", carried_from=999999)) is None
    with pytest.raises(InputError):
        await store.carry_page("docs", run, Document("https://docs.example/a", "", ""))
