"""Load: 32 query clients for 60 s against `ragserver serve` while a crawl and an upload run,
with 200 Socket.IO subscribers following their progress.

    python python/reliability/load.py                       # the run RELIABILITY.md reports
    python python/reliability/load.py --clients 8 --seconds 15 --subscribers 20   # a quick look

Everything talks to 127.0.0.1 only: the server, and the site it crawls (the Python 3.11 docs from
/usr/share/doc/python3.11/html under http.server when installed, else a generated site). The
server gets a corpus first so that queries have something to find, with the real MiniLM
embedder and a tiny Qwen3 reranker, so every query embeds, searches and reranks.
Reported: queries and errors (any non-200 or transport error), latency p50/p95/p99/max,
event-loop lag measured inside the server (/health event_loop, sampled every second), Socket.IO
events per subscriber, server RSS every 5 s. Exit code 1 when there were errors, a subscriber
got no event, or lag went over 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.server
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import socketio
from faults import corpus
from harness import API_KEY, AUTH, ServerProcess, model_env, new_data_dir, wait_operation

PY_DOCS = Path("/usr/share/doc/python3.11/html")
QUERIES = [
    "how do I open a file",
    "steam valve pressure",
    "asyncio event loop",
    "boiler gauge flange",
    "list comprehension",
    "piston engine",
    "regular expression groups",
    "dictionary methods",
]


def serve_folder(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def generated_site(folder: Path, pages: int = 400) -> Path:
    """A linked HTML site on disk, when the Python docs are not installed."""
    folder.mkdir(parents=True, exist_ok=True)
    text = " ".join(f"Sentence {k} about valves, boilers and event loops." for k in range(60))
    for i in range(pages):
        links = "".join(f'<a href="p{(i * 7 + k) % pages}.html">next</a> ' for k in range(1, 4))
        html = f"<html><head><title>Page {i}</title></head><body><h1>Page {i}</h1><p>{text}</p>{links}</body></html>"
        (folder / f"p{i}.html").write_text(html)
    (folder / "index.html").write_text('<html><body><a href="p0.html">start</a></body></html>')
    return folder


async def query_client(client: httpx.AsyncClient, number: int, until: float, latencies: list, errors: list) -> None:
    sent = 0
    while time.monotonic() < until:
        body = {"query": QUERIES[(number + sent) % len(QUERIES)], "match_count": 5}
        started = time.perf_counter()
        try:
            response = await client.post("/api/rag/query", json=body)
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        latencies.append(time.perf_counter() - started)
        sent += 1


async def subscriber(base_url: str, progress_id: str, events: list, until: float) -> str | None:
    """Connect with the key, subscribe, count `progress` events until the operation ends or `until`.

    Returns an error text, or None; an operation still running at `until` is not an error (the
    report says how many subscribers saw the final status).
    """
    sio = socketio.AsyncClient(reconnection=False)
    done = asyncio.Event()

    async def on_progress(data: dict) -> None:
        events.append(data.get("status"))
        if data.get("status") in {"completed", "failed", "cancelled"}:
            done.set()

    sio.on("progress", on_progress)
    try:
        await sio.connect(base_url, transports=["websocket"], auth={"token": API_KEY}, wait_timeout=30)
        ack = await sio.call("subscribe", {"progressId": progress_id}, timeout=30)
        if not ack.get("success"):
            return f"subscribe refused: {ack}"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(1.0, until - time.monotonic()))
        return None if events else "no progress event received"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await sio.disconnect()


async def sample_server(server: ServerProcess, stop: asyncio.Event, lag: list, rss: list) -> None:
    """Every second: the server's recent event-loop lag (from /health) as (second, ms); RSS every 5 s."""
    process = psutil.Process(server.process.pid)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        while not stop.is_set():
            seconds = round(time.monotonic() - started)
            try:
                health = (await client.get("/health")).json()
                lag.append((seconds, health["event_loop"]["lag_recent_max_ms"]))
            except (httpx.HTTPError, KeyError) as exc:
                lag.append((seconds, f"health failed: {exc}"))
            if not rss or seconds - rss[-1][0] >= 5:
                rss.append((seconds, round(process.memory_info().rss / 2**20)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def run_load(server: ServerProcess, site_url: str, args: argparse.Namespace) -> dict:
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=AUTH, timeout=60, limits=httpx.Limits(max_connections=args.clients + 8)
    ) as client:
        health_before = (await client.get("/health")).json()["event_loop"]
        crawl = (
            await client.post(
                "/api/knowledge-items/crawl", json={"url": site_url, "max_depth": 3, "max_pages": args.crawl_pages}
            )
        ).json()
        upload = (
            await client.post("/api/documents/upload", files={"file": ("load.jsonl", corpus("load", args.upload_docs))})
        ).json()
        started = time.monotonic()
        until = started + args.seconds
        latencies: list[float] = []
        errors: list[str] = []
        lag: list = []
        rss: list = []
        events: list[list] = [[] for _ in range(args.subscribers)]
        operations = [crawl["progressId"], upload["progressId"]]
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_server(server, stop, lag, rss))
        subscribers = asyncio.gather(
            *[
                subscriber(server.base_url, operations[i % 2], events[i], until + args.drain_seconds)
                for i in range(args.subscribers)
            ]
        )
        await asyncio.gather(*[query_client(client, n, until, latencies, errors) for n in range(args.clients)])
        sub_errors = [r for r in await subscribers if r]
        stop.set()
        await sampler
        finals = {}
        for name, progress_id in zip(("crawl", "upload"), operations, strict=True):
            state = (await client.get(f"/api/progress/{progress_id}")).json()
            finals[name] = {"status": state["status"], "counts": state["counts"]}
        health_after = (await client.get("/health")).json()["event_loop"]
    window = [v for t, v in lag if isinstance(v, int | float) and t <= args.seconds + 10]  # ~10 s probe window
    after = [v for t, v in lag if isinstance(v, int | float) and t > args.seconds + 10]
    return {
        "queries": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "qps": round(len(latencies) / args.seconds, 1),
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p95": round(percentile(latencies, 0.95) * 1000, 1),
            "p99": round(percentile(latencies, 0.99) * 1000, 1),
            "max": round(max(latencies, default=0) * 1000, 1),
        },
        "event_loop": {
            "lag_max_ms_during_queries": max(window, default=None),
            "lag_max_ms_after_queries": max(after, default=None),
            "lag_samples": len(window) + len(after),
            "health_failures": [v for _, v in lag if not isinstance(v, int | float)][:3],
            "over_100ms_during_run": health_after["lag_over_100ms"] - health_before["lag_over_100ms"],
            "recent_max_over_100ms_at": [(t, v) for t, v in lag if isinstance(v, int | float) and v >= 100],
            "lag_max_ms_since_start": health_after["lag_max_ms"],
        },
        "socketio": {
            "subscribers": args.subscribers,
            "errors": len(sub_errors),
            "error_samples": sub_errors[:3],
            "with_events": sum(1 for e in events if e),
            "events_total": sum(len(e) for e in events),
            "saw_final_status": sum(1 for e in events if e and e[-1] in {"completed", "failed", "cancelled"}),
        },
        "operations": finals,
        "rss_mb": rss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--crawl-pages", type=int, default=300)
    parser.add_argument("--upload-docs", type=int, default=3000)
    parser.add_argument("--seed-docs", type=int, default=1000, help="corpus ingested before the load starts")
    parser.add_argument("--drain-seconds", type=float, default=240, help="how long subscribers wait for the end")
    args = parser.parse_args()

    data_dir = new_data_dir("load-")
    folder = PY_DOCS if (PY_DOCS / "index.html").exists() else generated_site(data_dir / "site")
    site, site_url = serve_folder(folder)
    env = {**model_env(), "DATA_DIR": str(data_dir), "CRAWL_ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "warning"}
    server = ServerProcess(env, data_dir / "server.log").start()
    try:
        server.wait_ready()
        with server.client() as client:
            seeded = client.post(
                "/api/documents/upload", files={"file": ("seed.jsonl", corpus("seed", args.seed_docs))}
            )
            state = wait_operation(client, seeded.json()["progressId"], timeout=900)
            print(f"seed corpus: {state['status']} {state['counts']}", flush=True)
        report = asyncio.run(run_load(server, site_url + "/index.html", args))
        report["site"] = str(folder)
        report["server_alive"] = server.process.poll() is None
    finally:
        server.stop()
        site.shutdown()
    rss = report.pop("rss_mb")
    print(json.dumps(report, indent=1))
    print("rss_mb (second, MB):", json.dumps(rss))
    lag_ok = (report["event_loop"]["lag_max_ms_during_queries"] or 0) < 100
    ok = report["errors"] == 0 and report["socketio"]["errors"] == 0 and lag_ok and report["server_alive"]
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
