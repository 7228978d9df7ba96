"""The store's write path alone: write_document of pages with vectors, no parsing, no model.

    python benchmarks/bench_store_write.py [--pages 20] [--chunks 100] [--dimension 384] [--repeats 5]

Starts an embedded Postgres in a temporary folder (durability off, as the tests run it), then
per repetition begins a run of one source, writes --pages documents of --chunks chunks, each
chunk with a unit vector of --dimension float32 values (seeded, so every run writes the same
bytes), and commits it (replacing the previous generation). It times each write_document call
and the CPU time this process spent on it (the event loop's thread, and all threads), and
reports the medians over all writes: what an ingest pays per page to hand its chunks and
vectors to the database. To compare with an earlier commit, run it with that commit's source
first on the path and another --name:

    git archive <commit> python/src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/python/src python benchmarks/bench_store_write.py --name store_write_old
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from harness import save_result

from ragserver.config import Settings
from ragserver.domain import Chunk, Document, SourceInfo
from ragserver.store import Store, open_store
from ragserver.store.embedded import EmbeddedPostgres

FAST_OPTIONS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
MODEL = "bench/store-write"


def make_pages(pages: int, chunks: int, dimension: int) -> list[tuple[Document, list[Chunk]]]:
    """Deterministic pages: markdown plus chunks of a few sentences, each with a unit float32 vector."""
    rng = np.random.default_rng(7)
    out = []
    for p in range(pages):
        vectors = rng.standard_normal((chunks, dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        texts = [f"Page {p} chunk {c}: " + "vector search with reciprocal rank fusion. " * 12 for c in range(chunks)]
        doc = Document(f"https://bench.example/{p}", f"Page {p}", "\n\n".join(texts))
        out.append(
            (
                doc,
                [
                    Chunk(c, t, [f"Page {p}"], {}, v.tolist())
                    for c, (t, v) in enumerate(zip(texts, vectors, strict=True))
                ],
            )
        )
    return out


class CpuTime:
    """CPU seconds while a block runs: of the main thread (the event loop's own work) and of the
    whole process (that plus worker threads; Postgres is another process and not counted)."""

    def __enter__(self) -> CpuTime:
        self.start = (time.thread_time(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop = time.thread_time() - self.start[0]
        self.process = time.process_time() - self.start[1]


async def repetition(store: Store, pages: list[tuple[Document, list[Chunk]]]) -> list[tuple[float, float, float]]:
    """One generation: (wall, loop CPU, process CPU) seconds of each write_document."""
    run = await store.begin_run(SourceInfo("bench", "Bench", "https://bench.example"), "upload")
    timings = []
    for doc, chunks in pages:
        t0 = time.perf_counter()
        with CpuTime() as cpu:
            await store.write_document("bench", run, doc, chunks, [], MODEL)
        timings.append((time.perf_counter() - t0, cpu.loop, cpu.process))
    await store.commit_run("bench", run)
    return timings


async def bench(args: argparse.Namespace, conninfo: str) -> dict[str, Any]:
    pages = make_pages(args.pages, args.chunks, args.dimension)
    timings: list[tuple[float, float, float]] = []
    async with open_store(Settings(database_url=conninfo)) as store:
        await store.ensure_embedding_space(MODEL, args.dimension)
        await repetition(store, pages)  # warm-up: connections, plans, the HNSW index's first pages
        per_repeat = []
        for _ in range(args.repeats):
            done = await repetition(store, pages)
            timings += done
            per_repeat.append(round(sum(wall for wall, _, _ in done), 3))
    walls, loop_cpu, process_cpu = zip(*timings, strict=True)
    return {
        "pages": args.pages,
        "chunks_per_page": args.chunks,
        "dimension": args.dimension,
        "repeats": args.repeats,
        "write_document_ms_median": round(statistics.median(walls) * 1000, 2),
        "loop_cpu_ms_median": round(statistics.median(loop_cpu) * 1000, 2),
        "process_cpu_ms_median": round(statistics.median(process_cpu) * 1000, 2),
        "pages_per_s": round(len(walls) / sum(walls), 1),
        "seconds_per_repeat": per_repeat,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="store_write", help="result file name under benchmarks/results")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ragbench-store-write-"))
    server = EmbeddedPostgres(folder / "postgres", options=FAST_OPTIONS)
    try:
        conninfo = server.start()
        result = asyncio.run(bench(args, conninfo))
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    save_result(args.name, result)


if __name__ == "__main__":
    main()
