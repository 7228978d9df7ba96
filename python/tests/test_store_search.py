"""Hybrid and full-text search of the Store on a real embedded Postgres."""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import search_corpus
from support.search_corpus import assert_vectors_round_trip, cosine_similarity, unit_vectors, write_corpus

from ragserver.domain import Chunk, CodeExample, CodeExampleHit, Document, SourceInfo
from ragserver.errors import InputError
from ragserver.store import Store

MODEL = "test/search-model"

DOCS = {
    "python": [
        ("Installing packages", "Use pip install to add packages to a virtual environment."),
        ("Configuring the server", "The server reads its port and host from environment variables."),
        ("Asyncio", "An event loop runs coroutines; await suspends a coroutine until the result is ready."),
    ],
    "postgres": [
        ("Indexes", "A GIN index speeds up full text search over tsvector columns."),
        ("Vacuum", "Autovacuum removes dead tuples and keeps planner statistics fresh."),
        ("Configuring the server", "postgresql.conf sets shared_buffers and the listen port of the server."),
    ],
}


def unit(i: int, dim: int = 4) -> list[float]:
    return [1.0 if j == i % dim else 0.0 for j in range(dim)]


async def load(store: Store, labels: dict[str, dict[str, str]] | None = None) -> None:
    """Both sources committed, one page per heading; chunk i of a source gets the unit vector i.
    `labels`: source id -> its metadata (library / version)."""
    await store.ensure_embedding_space(MODEL, 4)
    for source_id, sections in DOCS.items():
        metadata = (labels or {}).get(source_id, {})
        run = await store.begin_run(
            SourceInfo(source_id, source_id, f"https://{source_id}.example", metadata=metadata), "crawl"
        )
        for i, (heading, text) in enumerate(sections):
            chunk = Chunk(0, text, [source_id.title(), heading], {"n": i}, unit(i))
            example = CodeExample(0, f"# {heading}\nprint({i})", "python", f"{heading}: {text}", [heading])
            doc = Document(f"https://{source_id}.example/{i}", heading, f"# {heading}\n\n{text}")
            await store.write_document(source_id, run, doc, [chunk], [example], MODEL)
        await store.commit_run(source_id, run)


async def search(store: Store, query: str, vector: list[float] | None = None, source_id: str | None = None):
    return await store.hybrid_search(
        query,
        vector,
        MODEL if vector is not None else None,
        match_count=10,
        source_id=source_id,
        rrf_k=60,
        candidates=20,
    )


async def search_code(
    store: Store,
    query: str,
    vector: list[float] | None = None,
    source_id: str | None = None,
    *,
    model: str = MODEL,
    rrf_k: int = 60,
    candidates: int = 20,
) -> list[CodeExampleHit]:
    return await store.search_code_examples(
        query,
        vector,
        model if vector is not None else None,
        match_count=10,
        source_id=source_id,
        rrf_k=rrf_k,
        candidates=candidates,
    )


async def test_full_text_only(store: Store) -> None:
    await load(store)
    hits = await search(store, "GIN index")
    assert hits[0].content.startswith("A GIN index")
    assert all(h.vector_rank is None and h.text_rank is not None for h in hits)
    assert hits[0].fused_score == pytest.approx(1 / 61)
    assert all(h.similarity is None for h in hits), "no query vector, no similarity"


async def test_heading_path_is_searchable(store: Store) -> None:
    await load(store)
    hits = await search(store, "vacuum")
    assert hits[0].heading_path == ["Postgres", "Vacuum"]


async def test_long_question_matches_some_words(store: Store) -> None:
    """An OR of the question's words: documents need not contain every word."""
    await load(store)
    hits = await search(store, "How can I make my full text search queries faster with an index?")
    assert hits and hits[0].content.startswith("A GIN index")


async def test_common_words_rank_documents_with_more_matches_higher(store: Store) -> None:
    await load(store)
    hits = await search(store, "configuring the server port")
    assert {h.title for h in hits[:2]} == {"Configuring the server"}


@pytest.mark.parametrize("query", ["the and of", "???", "", "   ", "'\\'", "&|!:*()<->", 'a "" or'])
async def test_stopword_or_punctuation_only_queries(store: Store, query: str) -> None:
    await load(store)
    assert await search(store, query) == []
    hits = await search(store, query, unit(0))
    assert hits and all(h.text_rank is None for h in hits), "vector side still answers"


async def test_hybrid_fuses_both_rankings(store: Store) -> None:
    await load(store)
    hits = await search(store, "autovacuum dead tuples", unit(1))
    top = hits[0]
    assert top.content.startswith("Autovacuum") and top.vector_rank is not None and top.text_rank == 1
    assert top.fused_score == pytest.approx(1 / (60 + top.vector_rank) + 1 / 61)
    assert [h.fused_score for h in hits] == sorted((h.fused_score for h in hits), reverse=True)


async def test_source_filter(store: Store) -> None:
    await load(store)
    hits = await search(store, "configuring the server", unit(2), source_id="postgres")
    assert hits and {h.source_id for h in hits} == {"postgres"}
    assert await search(store, "server", unit(0), source_id="unknown") == []


async def test_library_and_version_filters(store: Store) -> None:
    await load(store, {"python": {"library": "CPython", "version": "3.13"}, "postgres": {"library": "PostgreSQL"}})

    async def sources(**filters: str | None) -> tuple[set[str], set[str]]:
        args = {"match_count": 10, "source_id": None, "rrf_k": 60, "candidates": 20} | filters
        chunks = await store.hybrid_search("configuring the server", unit(2), MODEL, **args)
        examples = await store.search_code_examples("configuring the server", unit(2), MODEL, **args)
        return {h.source_id for h in chunks}, {e.source_id for e in examples}

    assert await sources() == ({"python", "postgres"}, {"python", "postgres"})
    assert await sources(library="postgresql") == ({"postgres"}, {"postgres"}), "case-insensitive"
    assert await sources(library="cpython", version="3.13") == ({"python"}, {"python"})
    assert await sources(version="3.13") == ({"python"}, {"python"})
    assert await sources(library="postgresql", version="3.13") == (set(), set())
    assert await sources(library="PostgreSQL", source_id="python") == (set(), set())
    assert await sources(library=None, version=None) == ({"python", "postgres"}, {"python", "postgres"})


async def test_staged_generation_is_invisible(store: Store) -> None:
    await load(store)
    run = await store.begin_run(SourceInfo("python", "python", "x"), "recrawl")
    staged = Chunk(0, "brand new zebra content", [], {}, unit(0))
    await store.write_document("python", run, Document("u", "t", "m"), [staged], [], MODEL)
    assert all("zebra" not in h.content for h in await search(store, "zebra", unit(0)))
    await store.commit_run("python", run)
    assert (await search(store, "zebra"))[0].content == "brand new zebra content"


async def test_model_without_vectors_falls_back_to_full_text(store: Store) -> None:
    await load(store)
    hits = await store.hybrid_search(
        "GIN index", [0.5] * 7, "never/registered", match_count=5, source_id=None, rrf_k=60, candidates=5
    )
    assert hits and all(h.vector_rank is None for h in hits)


async def test_bad_search_arguments(store: Store) -> None:
    for kwargs in ({"match_count": 0}, {"candidates": 0}, {"rrf_k": -1}, {"match_count": 5000}):
        args = {"match_count": 5, "source_id": None, "rrf_k": 60, "candidates": 10} | kwargs
        with pytest.raises(InputError):
            await store.hybrid_search("q", None, None, **args)
    with pytest.raises(InputError):
        await store.hybrid_search("q", [float("inf")] * 4, MODEL, match_count=5, source_id=None, rrf_k=60, candidates=5)


async def test_code_examples(store: Store) -> None:
    await load(store)
    hits = await search_code(store, "vacuum")
    assert hits[0].code.startswith("# Vacuum") and hits[0].language == "python"
    assert hits[0].heading_path == ["Vacuum"] and hits[0].url == "https://postgres.example/1"
    assert hits[0].similarity is None and hits[0].fused_score == pytest.approx(1 / 61)
    hybrid = await search_code(store, "coroutines", unit(2), source_id="python")
    assert {h.source_id for h in hybrid} == {"python"} and len(hybrid) == 3, "vector side ranks every page"
    assert hybrid[0].code.startswith("# Asyncio")
    assert (hybrid[0].vector_rank, hybrid[0].text_rank) == (1, 1)
    assert hybrid[0].similarity == pytest.approx(1.0), "the similarity of the best chunk of its page"


async def test_similarity_is_one_minus_cosine_distance(store: Store) -> None:
    vectors = await write_corpus(store)
    [query_vector] = unit_vectors(1, seed=5)
    hits = await store.hybrid_search(
        "search", query_vector, search_corpus.MODEL, match_count=20, source_id=None, rrf_k=60, candidates=20
    )
    assert len(hits) == len(vectors), "every chunk is a vector candidate"
    for hit in hits:
        assert hit.similarity == pytest.approx(cosine_similarity(vectors[hit.content], query_vector), abs=1e-6)
    by_rank = sorted(hits, key=lambda h: h.vector_rank or 0)
    assert [h.similarity for h in by_rank] == sorted((h.similarity or 0.0 for h in hits), reverse=True)

    few = await store.hybrid_search(
        "search", query_vector, search_corpus.MODEL, match_count=20, source_id=None, rrf_k=60, candidates=3
    )
    text_only = [h for h in few if h.vector_rank is None]
    assert text_only and all(h.similarity is None for h in text_only), "no vector candidate, no similarity"
    assert sum(h.similarity is not None for h in few) == 3


async def test_vectors_round_trip_exactly(store: Store, pg_settings) -> None:
    """Over psycopg the vectors go in pgvector's binary form."""
    await assert_vectors_round_trip(store, pg_settings.database_url)


async def test_code_example_search_honours_rrf_k(store: Store) -> None:
    await write_corpus(store)
    [query_vector] = unit_vectors(1, seed=5)
    for rrf_k in (0, 10, 60):
        hits = await search_code(store, "index", query_vector, model=search_corpus.MODEL, rrf_k=rrf_k)
        assert hits and any(h.text_rank is not None for h in hits)
        for hit in hits:
            expected = sum(1 / (rrf_k + rank) for rank in (hit.vector_rank, hit.text_rank) if rank is not None)
            assert hit.fused_score == pytest.approx(expected)
        assert [h.fused_score for h in hits] == sorted((h.fused_score for h in hits), reverse=True)


async def test_code_example_search_honours_candidates(store: Store) -> None:
    """Each side contributes at most `candidates` examples (the pages of the nearest chunks, the
    best full-text matches)."""
    await write_corpus(store)
    [query_vector] = unit_vectors(1, seed=5)
    wide = await search_code(store, "search index", query_vector, model=search_corpus.MODEL, candidates=20)
    assert sum(h.vector_rank is not None for h in wide) == len(search_corpus.TOPICS), "every page is near enough"
    assert sum(h.text_rank is not None for h in wide) >= 2
    narrow = await search_code(store, "search index", query_vector, model=search_corpus.MODEL, candidates=1)
    assert sum(h.vector_rank is not None for h in narrow) == 1
    assert sum(h.text_rank is not None for h in narrow) == 1
    nearest = min(wide, key=lambda h: h.vector_rank or len(wide) + 1)
    assert any(h.code_example_id == nearest.code_example_id and h.vector_rank == 1 for h in narrow)
    assert nearest.similarity is not None and nearest.similarity == max(h.similarity or -1.0 for h in wide)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80))
async def test_any_text_query_is_accepted(store: Store, query: str) -> None:
    hits = await store.hybrid_search(query, None, None, match_count=3, source_id=None, rrf_k=60, candidates=5)
    assert isinstance(hits, list)


async def test_nul_in_query_is_input_error(store: Store) -> None:
    with pytest.raises(InputError):
        await store.hybrid_search("a\x00b", None, None, match_count=3, source_id=None, rrf_k=60, candidates=5)


async def test_commit_refreshes_statistics_for_idf(store: Store, pg_settings) -> None:
    """Full-text IDF comes from planner statistics, which commit_run refreshes after a large ingest."""
    await load(store)
    async with await psycopg.AsyncConnection.connect(pg_settings.database_url) as conn:
        cur = await conn.execute(
            "SELECT lexeme, idf FROM rag_lexeme_stats('rag_chunks', ARRAY['server', 'autovacuum'])"
        )
        idf = dict(await cur.fetchall())
    assert 0 < idf["server"] < idf["autovacuum"]
