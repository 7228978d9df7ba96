"""A small deterministic corpus with real-valued vectors, for tests that compare scores exactly.

Vectors are seeded float32 unit vectors (what an embedder hands the store), so they are stored
without rounding and a test can compute every cosine itself.
"""

from __future__ import annotations

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async

from ragserver.domain import Chunk, CodeExample, Document, SourceInfo
from ragserver.store import Store

MODEL = "test/corpus-model"
OTHER_MODEL = "test/corpus-other-model"
DIMENSION = 8
TOPICS = [
    "vector search with an HNSW index",
    "full text search with a GIN index",
    "reciprocal rank fusion of two rankings",
    "an event loop runs coroutines",
    "autovacuum keeps planner statistics fresh",
    "connection pools and session locks",
]


def unit_vectors(count: int, seed: int) -> list[list[float]]:
    """`count` seeded float32 unit vectors of DIMENSION values, as plain float lists."""
    rows = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return [row.tolist() for row in rows]


def cosine_similarity(a: list[float], b: list[float]) -> float:
    """1 - cosine distance, in float64 over the float32 values."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


async def write_corpus(store: Store, source_id: str = "corpus") -> dict[str, list[float]]:
    """One committed source: a page per topic with two chunks (seeded vectors) and a code example;
    returns chunk content -> its vector."""
    vectors = unit_vectors(2 * len(TOPICS), seed=11)
    written: dict[str, list[float]] = {}
    run = await store.begin_run(SourceInfo(source_id, "Corpus", f"https://{source_id}.example"), "upload")
    for i, topic in enumerate(TOPICS):
        texts = [f"{topic}: part one", f"more about {topic}: part two"]
        chunks = [Chunk(j, text, [topic], {"page": i}, vectors[2 * i + j]) for j, text in enumerate(texts)]
        example = CodeExample(0, f"# {topic}\nrun({i})", "python", f"an example of {topic}", [topic])
        doc = Document(f"https://{source_id}.example/{i}", topic, "\n\n".join(texts))
        await store.write_document(source_id, run, doc, chunks, [example], MODEL)
        written.update({c.content: vectors[2 * i + j] for j, c in enumerate(chunks)})
    await store.commit_run(source_id, run)
    return written


async def stored_vectors(conninfo: str, model: str) -> dict[str, np.ndarray]:
    """chunk content -> the vector of `model` as the database holds it (read in binary, exact bits)."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        await register_vector_async(conn)
        cur = await conn.execute(
            "SELECT c.content, e.embedding FROM rag_chunk_embeddings e JOIN rag_chunks c USING (chunk_id)"
            " WHERE e.model = %s",
            (model,),
            binary=True,
        )
        return {content: vector.to_numpy() for content, vector in await cur.fetchall()}


async def assert_vectors_round_trip(store: Store, conninfo: str) -> None:
    """float32 vectors written by write_document and by set_embeddings reach the database bit for bit."""
    vectors = await write_corpus(store)
    stored = await stored_vectors(conninfo, MODEL)
    assert stored.keys() == vectors.keys()
    for content, vector in vectors.items():
        np.testing.assert_array_equal(stored[content], np.asarray(vector, dtype=np.float32))

    missing = await store.chunks_missing_embeddings(OTHER_MODEL, 100)
    replacements = unit_vectors(len(missing), seed=3)
    await store.set_embeddings(
        OTHER_MODEL, [(chunk_id, v) for (chunk_id, _), v in zip(missing, replacements, strict=True)]
    )
    stored = await stored_vectors(conninfo, OTHER_MODEL)
    assert len(stored) == len(missing) == len(vectors)
    for (_, content), vector in zip(missing, replacements, strict=True):
        np.testing.assert_array_equal(stored[content], np.asarray(vector, dtype=np.float32))
