"""Search latency at 10k and 100k chunks, and HNSW recall against exact search.

    python benchmarks/bench_search.py [--data-dir /tmp/ragbench/search] [--sizes 10000 100000]

Builds the corpus through the product: SciFact is ingested once (JSONL ingestion, real MiniLM
vectors); further chunks are perturbed copies of those chunks (10 % of the words dropped, the
vector moved by Gaussian noise and re-normalized) written with the store's own write path, until
the active chunk count reaches each size. At each size it times the store's hybrid search (one SQL
function call: HNSW top-k + full-text top-k fused by RRF; query vectors precomputed, no rerank)
over the SciFact test queries plus common-word queries, at concurrency 1 and 8, and measures
HNSW recall@10: the product's vector-only top 10 against an exact scan of the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from harness import SCIFACT, machine, product_stack, read_jsonl, save_result

from ragserver.domain import Chunk, Document, SourceInfo
from ragserver.store.embedded import EmbeddedPostgres

COMMON_WORD_QUERIES = [
    "the effect of the treatment in patients with the disease",
    "cells are associated with an increase in the risk",
    "study of the role of protein expression in human cells",
    "patients with high levels show reduced effects",
    "the results of this study show that the data are associated with the response",
    "is there an association between the cell and the patient outcome",
    "increased expression in cells of patients",
    "the effect of a gene on the disease",
]
COPY_BATCH = 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def perturb_text(text: str, rng: random.Random) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() > 0.1]
    return " ".join(kept or words)


def perturb_vector(vector: np.ndarray, rng: np.random.Generator) -> list[float]:
    moved = vector + rng.normal(0.0, 0.02, size=vector.shape)
    return (moved / np.linalg.norm(moved)).tolist()


async def active_chunk_count(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT count(*) FROM rag_chunks c JOIN rag_sources s ON s.active_run_id = c.run_id")
    return int((await cur.fetchone())[0])


async def base_chunks(conn: psycopg.AsyncConnection, model: str) -> list[tuple[str, str, np.ndarray]]:
    """(title, content, vector) of the ingested SciFact chunks, read back for copying."""
    cur = await conn.execute(
        """SELECT p.title, c.content, e.embedding::text
           FROM rag_chunks c JOIN rag_pages p ON p.page_id = c.page_id
           JOIN rag_chunk_embeddings e ON e.chunk_id = c.chunk_id AND e.model = %s
           JOIN rag_sources s ON s.active_run_id = c.run_id
           WHERE s.source_id NOT LIKE 'copy-%%'""",
        (model,),
    )
    rows = await cur.fetchall()
    return [(t, c, np.array([float(x) for x in v.strip("[]").split(",")])) for t, c, v in rows]


async def grow_to(stack: Any, conn: psycopg.AsyncConnection, target: int, base: list, seed: int) -> int:
    """Write perturbed copies (one source per copy round) until the active chunk count reaches target."""
    have = await active_chunk_count(conn)
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    round_no = 0
    model = stack.ml.embedding_model
    while have < target:
        round_no += 1
        source = SourceInfo(source_id=f"copy-{seed}-{round_no}", title="perturbed copy", origin="benchmark")
        run_id = await stack.store.begin_run(source, "benchmark")
        need = min(len(base), target - have)
        for start in range(0, need, COPY_BATCH):
            for i, (title, content, vector) in enumerate(base[start : min(need, start + COPY_BATCH)], start):
                chunk = Chunk(0, perturb_text(content, rng), embedding=perturb_vector(vector, nrng))
                doc = Document(url=f"copy://{seed}/{round_no}/{i}", title=title, markdown=chunk.content)
                await stack.store.write_document(source.source_id, run_id, doc, [chunk], [], model)
        await stack.store.commit_run(source.source_id, run_id)
        have += need
    return have


async def time_queries(stack: Any, queries: list[tuple[str, list[float]]], concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    pending = list(queries)

    async def client() -> None:
        while pending:
            text, vector = pending.pop()
            t0 = time.perf_counter()
            await stack.store.hybrid_search(
                text,
                vector,
                stack.ml.embedding_model,
                match_count=10,
                source_id=None,
                rrf_k=stack.settings.rrf_k,
                candidates=stack.settings.search_candidates,
            )
            latencies.append(1000 * (time.perf_counter() - t0))

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {
        "queries": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "qps": round(len(latencies) / wall, 1),
    }


async def hnsw_recall(stack: Any, conn: psycopg.AsyncConnection, vectors: list[list[float]]) -> float:
    """Mean overlap of the product's vector-only top 10 with an exact (sequential scan) top 10."""
    model, dim = stack.ml.embedding_model, stack.ml.dimension
    overlaps = []
    for vector in vectors:
        hits = await stack.store.hybrid_search(
            "", vector, model, match_count=10, source_id=None, rrf_k=60, candidates=stack.settings.search_candidates
        )
        literal = "[" + ",".join(repr(x) for x in vector) + "]"
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_indexscan = off")
            await conn.execute("SET LOCAL enable_bitmapscan = off")
            cur = await conn.execute(
                f"""SELECT e.chunk_id FROM rag_chunk_embeddings e
                    JOIN rag_sources s ON s.active_run_id = e.run_id
                    WHERE e.model = %s
                    ORDER BY e.embedding::vector({dim}) <=> %s::vector({dim}) LIMIT 10""",
                (model, literal),
            )
            exact = {row[0] for row in await cur.fetchall()}
        overlaps.append(len(exact & {h.chunk_id for h in hits}) / 10)
    return statistics.mean(overlaps)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ragbench/search"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--recall-queries", type=int, default=100)
    args = parser.parse_args()
    server = EmbeddedPostgres(args.data_dir / "postgres")
    dsn = await asyncio.to_thread(server.start)
    try:
        async with (
            product_stack(args.data_dir, database_url=dsn, use_reranking=False) as stack,
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
        ):
            if not await base_chunks(conn, stack.ml.embedding_model):
                await stack.ingest.ingest_path(SCIFACT / "corpus.jsonl", tags=["scifact"], knowledge_type="benchmark")
            base = await base_chunks(conn, stack.ml.embedding_model)
            test_ids = {line.split("\t")[0] for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]}
            texts = [row["text"] for row in read_jsonl(SCIFACT / "queries.jsonl") if row["_id"] in test_ids]
            texts += COMMON_WORD_QUERIES * 5
            vectors = await stack.ml.embed(texts)
            queries = list(zip(texts, vectors, strict=True))
            levels = []
            for size in args.sizes:
                chunks = await grow_to(stack, conn, size, base, seed=size)
                await conn.execute("ANALYZE")
                await time_queries(stack, queries[:20], 1)  # warm the caches
                level = {
                    "chunks": chunks,
                    "concurrency_1": await time_queries(stack, queries, 1),
                    "concurrency_8": await time_queries(stack, queries, 8),
                    "common_words_c1": await time_queries(stack, queries[-len(COMMON_WORD_QUERIES) :] * 5, 1),
                    "hnsw_recall@10": round(await hnsw_recall(stack, conn, vectors[: args.recall_queries]), 4),
                }
                levels.append(level)
                print(level, flush=True)
    finally:
        await asyncio.to_thread(server.stop)
    save_result(
        "search_latency_" + "_".join(f"{size // 1000}k" for size in args.sizes),
        {
            "command": " ".join(["python", "benchmarks/bench_search.py", *sys.argv[1:]]),
            "machine": machine(),
            "levels": levels,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
