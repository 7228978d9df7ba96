"""MCP search latency against the same query over `POST /api/rag/query`, reranking off.

    python benchmarks/bench_mcp.py [--data-dir /tmp/ragbench/mcp] [--queries 50] [--rounds 4]

One server: the app (create_app) under uvicorn on 127.0.0.1, its embedded Postgres under
--data-dir, the real all-MiniLM-L6-v2 embedder, USE_RERANKING=false and an API key. It holds
bench_rerank's SciFact subset (300 documents plus the relevant ones of the queries asked),
ingested once through the server's ingest service. The first --queries SciFact test queries are
then asked --rounds times on both faces, each query on both before the next (which face goes
first alternates), so load from elsewhere on the machine falls on both alike:
- MCP: one SDK client session over streamable HTTP, `rag_search_knowledge_base` in chunks mode;
- HTTP: one keep-alive client, `POST /api/rag/query` with the same query, match_count and mode.
Both wait for the parsed answer; the first round's answers are checked to name the same chunks.
Logging is set up as `ragserver serve` sets it up (so the SDK installs no handler of its own);
uvicorn's access log is off (it costs both faces the same line) and so are the clients' request lines.
Reported: p50/p95 per face, the MCP overhead at p50 and p95 in %, the median of the per-query
differences, the part of the difference the SDK client spends checking the answer against the
tool's output schema (timed apart, after each call), and the load average before and after
(others' work on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from bench_rerank import ensure_subset, test_queries
from bench_search import percentile
from harness import Stack, machine, minilm_path, save_result
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from ragserver.app import create_app
from ragserver.config import Settings

API_KEY = "bench-mcp-key"
MATCH_COUNT = 10
TOOL = "rag_search_knowledge_base"
START_TIMEOUT_S = 300


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    """The app under uvicorn on a port the OS picks, in this loop, ready; yields its base URL and runtime."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited before it started")
            if time.monotonic() > deadline:
                raise TimeoutError("uvicorn did not start")
            await asyncio.sleep(0.05)
        runtime = app.other_asgi_app.state.runtime
        await asyncio.wait_for(runtime.wait_ready(), START_TIMEOUT_S)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", runtime
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "calls": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "mean_ms": round(statistics.mean(latencies), 2),
    }


async def timed(ask: Callable[[str], Awaitable[list[int]]], query: str) -> tuple[float, list[int]]:
    """Milliseconds until the parsed answer, and the chunk ids it names."""
    started = time.perf_counter()
    ids = await ask(query)
    return 1000 * (time.perf_counter() - started), ids


async def schema_check_ms(mcp: Client, tool: str, result: CallToolResult) -> float:
    """What the SDK client's output-schema check of `result` (part of every call_tool) costs, once more."""
    started = time.perf_counter()
    await mcp.session.validate_tool_result(tool, result)
    return 1000 * (time.perf_counter() - started)


async def measure(base_url: str, queries: list[str], rounds: int) -> dict[str, Any]:
    """Each query over MCP and over HTTP, `rounds` times; latencies in ms per face."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    timeout = httpx2.Timeout(120, connect=10)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as mcp_http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=mcp_http)) as mcp,
        httpx2.AsyncClient(base_url=base_url, headers=headers, timeout=timeout) as http,
    ):
        last_result: CallToolResult | None = None  # the latest MCP answer, for its schema check

        async def over_mcp(query: str) -> list[int]:
            nonlocal last_result
            args = {"query": query, "match_count": MATCH_COUNT, "return_mode": "chunks"}
            result = await mcp.call_tool(TOOL, args)
            assert not result.is_error and isinstance(result.structured_content, dict), result
            last_result = result
            return [hit["id"] for hit in result.structured_content["results"]]

        async def over_http(query: str) -> list[int]:
            body = {"query": query, "match_count": MATCH_COUNT, "return_mode": "chunks"}
            reply = await http.post("/api/rag/query", json=body)
            assert reply.status_code == 200, reply.text
            return [hit["id"] for hit in reply.json()["results"]]

        for query in queries[:5]:  # warm both paths (connections, caches, the MCP session)
            await over_mcp(query)
            await over_http(query)
        latencies: dict[str, list[float]] = {"mcp": [], "http": []}
        differences: list[float] = []
        schema_checks: list[float] = []
        for round_no in range(rounds):
            for index, query in enumerate(queries):
                mcp_first = (round_no + index) % 2 == 0
                faces = [("mcp", over_mcp), ("http", over_http)]
                answers: dict[str, tuple[float, list[int]]] = {}
                for name, ask in faces if mcp_first else faces[::-1]:
                    answers[name] = await timed(ask, query)
                if round_no == 0:
                    assert answers["mcp"][1] == answers["http"][1], f"the faces disagree on {query!r}"
                for name, (ms, _) in answers.items():
                    latencies[name].append(ms)
                differences.append(answers["mcp"][0] - answers["http"][0])
                assert last_result is not None
                schema_checks.append(await schema_check_ms(mcp, TOOL, last_result))
    mcp_stats, http_stats = summary(latencies["mcp"]), summary(latencies["http"])
    return {
        "mcp": mcp_stats,
        "http": http_stats,
        "overhead_p50_pct": round(100 * (mcp_stats["p50_ms"] / http_stats["p50_ms"] - 1), 1),
        "overhead_p95_pct": round(100 * (mcp_stats["p95_ms"] / http_stats["p95_ms"] - 1), 1),
        "median_difference_ms": round(statistics.median(differences), 2),
        "median_client_schema_check_ms": round(statistics.median(schema_checks), 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/ragbench/mcp"))
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    base = Settings.from_env()
    logging.basicConfig(level=base.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    chosen = test_queries()[: args.queries]
    settings = dataclasses.replace(
        base,
        data_dir=args.data_dir,
        embedding_model=os.environ.get("EMBEDDING_MODEL") or str(minilm_path()),
        use_reranking=False,
        ragserver_api_key=API_KEY,
    )
    async with served(settings) as (base_url, runtime):
        parts = Stack(settings, runtime.store, runtime.ml, runtime.services.ingest, runtime.tracker)
        corpus = await ensure_subset(parts, args.data_dir, chosen)
        load_before = os.getloadavg()
        result = await measure(base_url, [text for _, text, _ in chosen], args.rounds)
        load_after = os.getloadavg()
    save_result(
        "mcp_overhead",
        {
            "command": " ".join(["python", "benchmarks/bench_mcp.py", *sys.argv[1:]]),
            "machine": machine(),
            "corpus": corpus,
            "queries": len(chosen),
            "rounds": args.rounds,
            "match_count": MATCH_COUNT,
            "reranking": False,
            "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
            "load_avg_1_5_15_after": [round(x, 2) for x in load_after],
            **result,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
