"""Retrieval quality on BEIR SciFact, through the product.

    python benchmarks/bench_retrieval.py [--data-dir /tmp/ragbench] [--splits test train]
                                         [--rerank-top-n 20] [--reranker PATH_OR_ID]

Ingests ../shared/datasets/scifact/corpus.jsonl with the JSONL ingestion feature (once; a second
run reuses the embedded Postgres under --data-dir), then runs every query of each split through
the store's hybrid search function in four modes: full text only (no query vector), vector only
(no query text), hybrid (RRF of both), and hybrid + rerank of the top N chunks with the configured
reranker. A document's score is its best chunk's. Reports nDCG@10, Recall@10 and Recall@100 as
BEIR computes them (binary qrels: DCG with log2 discounts; recall per query, averaged).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import SCIFACT, Stack, machine, product_stack, read_jsonl, save_result

from ragserver.domain import SearchHit
from ragserver.progress import ProgressTracker

CHUNKS_PER_QUERY = 300  # enough chunks to rank 100 distinct documents


def load_qrels(split: str) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with (SCIFACT / "qrels" / f"{split}.tsv").open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels[row["query-id"]][row["corpus-id"]] = int(row["score"])
    return dict(qrels)


def doc_id_of(hit: SearchHit) -> str:
    """The BEIR _id a chunk came from (JSONL ingestion keeps it as doc_id, and in the URL fragment)."""
    return str(hit.metadata.get("doc_id") or hit.url.rsplit("#", 1)[-1])


def rank_documents(hits: list[SearchHit], key: Any) -> list[str]:
    """Documents ordered by their best chunk under `key` (higher is better)."""
    best: dict[str, float] = {}
    for hit in hits:
        doc = doc_id_of(hit)
        score = key(hit)
        if doc not in best or score > best[doc]:
            best[doc] = score
    return sorted(best, key=lambda d: best[d], reverse=True)


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    hits = sum(1 for doc in ranked[:k] if relevant.get(doc, 0) > 0)
    return hits / sum(1 for rel in relevant.values() if rel > 0)


async def ensure_corpus(stack: Stack) -> dict[str, Any]:
    """Ingest the corpus once; report what the ingest took (or that it was reused)."""
    sources = await stack.store.list_sources(per_page=100)
    for item in sources["items"]:
        if item["origin"].endswith("corpus.jsonl") and item["chunk_count"] > 0:
            return {"reused": True, "chunks": item["chunk_count"], "documents": item["page_count"]}
    started = time.perf_counter()
    result = await stack.ingest.ingest_path(SCIFACT / "corpus.jsonl", tags=["scifact"], knowledge_type="benchmark")
    seconds = time.perf_counter() - started
    return {"reused": False, "seconds": round(seconds, 1), **result}


async def search(stack: Stack, text: str, vector: list[float] | None) -> list[SearchHit]:
    return await stack.store.hybrid_search(
        text,
        vector,
        stack.ml.embedding_model if vector is not None else None,
        match_count=CHUNKS_PER_QUERY,
        source_id=None,
        rrf_k=stack.settings.rrf_k,
        candidates=CHUNKS_PER_QUERY,
    )


async def evaluate_split(stack: Stack, split: str, queries: dict[str, str], rerank_top_n: int) -> dict[str, Any]:
    qrels = load_qrels(split)
    ids = [qid for qid in qrels if qid in queries]
    vectors = await stack.ml.embed([queries[qid] for qid in ids])
    modes = ["full_text", "vector", "hybrid"] + (["hybrid_rerank"] if stack.ml.reranker_ready else [])
    scores: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in modes}
    seconds: dict[str, float] = defaultdict(float)
    for qid, vector in zip(ids, vectors, strict=True):
        text = queries[qid]
        runs = {
            "full_text": (text, None),
            "vector": ("", vector),
            "hybrid": (text, vector),
        }
        for mode, (q_text, q_vec) in runs.items():
            t0 = time.perf_counter()
            hits = await search(stack, q_text, q_vec)
            took = time.perf_counter() - t0
            seconds[mode] += took
            record(scores[mode], rank_documents(hits, key=lambda h: h.fused_score), qrels[qid])
            if mode == "hybrid" and "hybrid_rerank" in scores:
                t0 = time.perf_counter()
                head = hits[:rerank_top_n]
                rerank = await stack.ml.rerank(text, [h.content for h in head])
                seconds["hybrid_rerank"] += took + time.perf_counter() - t0
                # The reranked head sits above the fused tail, as the query path returns them.
                lifted = {h.chunk_id: 1.0 + s for h, s in zip(head, rerank, strict=True)}
                ranked = rank_documents(hits, key=lambda h: lifted.get(h.chunk_id, h.fused_score))
                record(scores["hybrid_rerank"], ranked, qrels[qid])
    return {
        "queries": len(ids),
        "modes": {
            mode: {
                **{metric: round(sum(vals) / len(vals), 4) for metric, vals in per.items()},
                "ms_per_query": round(1000 * seconds[mode] / len(ids), 1),
            }
            for mode, per in scores.items()
        },
    }


def record(per_metric: dict[str, list[float]], ranked: list[str], relevant: dict[str, int]) -> None:
    per_metric["ndcg@10"].append(ndcg_at(ranked, relevant, 10))
    per_metric["recall@10"].append(recall_at(ranked, relevant, 10))
    per_metric["recall@100"].append(recall_at(ranked, relevant, 100))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ragbench/scifact"))
    parser.add_argument("--splits", nargs="+", default=["test", "train"])
    parser.add_argument("--rerank-top-n", type=int, default=20)
    parser.add_argument("--reranker", default=None, help="reranker id or folder (default: RERANKER_MODEL)")
    parser.add_argument("--no-rerank", action="store_true")
    args = parser.parse_args()
    overrides: dict[str, Any] = {"use_reranking": not args.no_rerank}
    if args.reranker:
        overrides["reranker_model"] = args.reranker
    queries = {row["_id"]: row["text"] for row in read_jsonl(SCIFACT / "queries.jsonl")}
    async with product_stack(args.data_dir, **overrides) as stack:
        stack.progress = ProgressTracker()
        ingest = await ensure_corpus(stack)
        result: dict[str, Any] = {
            "command": " ".join(["python", "benchmarks/bench_retrieval.py", *sys.argv[1:]]),
            "embedding_model": stack.ml.embedding_model,
            "reranker": stack.settings.reranker_model if stack.ml.reranker_ready else None,
            "rerank_top_n": args.rerank_top_n,
            "ingest": ingest,
            "machine": machine(),
        }
        for split in args.splits:
            result[split] = await evaluate_split(stack, split, queries, args.rerank_top_n)
    save_result("retrieval_scifact", result)


if __name__ == "__main__":
    asyncio.run(main())
