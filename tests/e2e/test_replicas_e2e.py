"""Several server replicas on one database, in a real Docker engine: the compose profile `replicas`.

Postgres with pgvector (python/docker/Dockerfile.postgres), Redis and HAProxy are built here; the two
replicas run the tier's server image with its ML env and models. A crawl of a site this test serves
starts on replica 1 and is followed and stopped from replica 2 (over HTTP and Socket.IO); both
replicas answer a query alike, and so does the proxy, which spreads requests over both and keeps
Socket.IO and MCP sessions on the replica that holds them. The profile runs under a compose project,
ports and container names of its own, beside the tier's single server.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import socketio
from conftest import (
    API_KEY,
    AUTH,
    COMPOSE_FILES,
    PROJECT,
    REPO,
    TIMINGS,
    Stack,
    env_file_with_key,
    free_port,
    run,
    wait_http_ok,
    wait_ml_ready,
)
from support.mcp_client import call, http_session
from support.polling import apoll_state, apoll_until, wait_operation
from support.site_fixtures import FixtureSite, Route, page
from test_docker_e2e import query, upload

REPLICAS_PROJECT = f"{PROJECT}-replicas"
PHRASE = f"narwhalcorn-{uuid.uuid4().hex[:8]}"
DOC = f"# Replicas\n\nTwo replicas share one Postgres; the code word is {PHRASE}.\n\n## Other\n\nOwls hunt at night.\n"
CRAWLED_WORD = f"ferrycorn-{uuid.uuid4().hex[:8]}"
CRAWLED_QUERY = f"When is the ferry timetable posted? {CRAWLED_WORD}"
IMAGE_TAGS = {f"RAGSERVER_{name.upper()}_IMAGE": f"ragserver-{name}:e2e" for name in ("postgres", "redis", "proxy")}


@dataclass
class Replicas:
    """The running profile: replica 1's and replica 2's base URLs, the proxy's, and compose for it."""

    env: dict[str, str]
    urls: tuple[str, str]
    proxy: str

    def compose(self, *args: str, check: bool = True):
        command = ["docker", "compose", "-p", REPLICAS_PROJECT, *COMPOSE_FILES, "--profile", "replicas", *args]
        return run(command, env=self.env, check=check)

    def exec(self, service: str, *args: str) -> str:
        return run(["docker", "exec", f"{REPLICAS_PROJECT}-{service}", *args]).stdout.strip()


@pytest.fixture(scope="module")
def replicas(stack: Stack, server_image: str, bootstrapped: Path) -> Iterator[Replicas]:
    """postgres, redis, replica-1, replica-2 and proxy up, both replicas with their models loaded."""
    ports = {name: str(free_port()) for name in ("POSTGRES_PORT", "REDIS_PORT", "REPLICA_1_PORT", "REPLICA_2_PORT")}
    proxy_port = str(free_port())
    env_file = stack.workdir / "replicas.env"  # the tier's .env, and the fixture site on 127.0.0.1 let through
    crawl_hosts = "CRAWL_ALLOWED_HOSTS=\n"
    settings = env_file_with_key(REPO / ".env.example", API_KEY)
    assert crawl_hosts in settings, f".env.example no longer has an empty {crawl_hosts.strip()} line"
    env_file.write_text(settings.replace(crawl_hosts, "CRAWL_ALLOWED_HOSTS=127.0.0.1\n", 1))
    env = {
        **stack.env,
        **ports,
        **IMAGE_TAGS,
        "PROXY_PORT": proxy_port,
        "RAGSERVER_CONTAINER": REPLICAS_PROJECT,
        "RAGSERVER_ENV_FILE": str(env_file),
        # characters a URL would need quoted: the replicas get it as PGPASSWORD, not inside DATABASE_URL
        "POSTGRES_PASSWORD": f"pw:{uuid.uuid4().hex}@/#",
    }
    urls = tuple(f"http://127.0.0.1:{ports[name]}" for name in ("REPLICA_1_PORT", "REPLICA_2_PORT"))
    profile = Replicas(env=env, urls=(urls[0], urls[1]), proxy=f"http://127.0.0.1:{proxy_port}")
    profile.compose("down", "-v", "--remove-orphans", check=False)
    started = time.monotonic()
    profile.compose("build", "postgres", "redis", "proxy")
    TIMINGS["replicas: postgres, redis, proxy images"] = time.monotonic() - started
    try:
        started = time.monotonic()
        profile.compose("up", "-d", "--no-build", "proxy")
        for url in profile.urls:
            wait_ml_ready(url)
        wait_http_ok(f"{profile.proxy}/health")
        TIMINGS["replicas: compose up -> both models loaded"] = time.monotonic() - started
        yield profile
    finally:
        profile.compose("down", "-v", "--remove-orphans", check=False)


def chunk_ranking(answer: dict[str, Any]) -> list[tuple[int, float | None]]:
    """What must agree between two replicas: the chunks found, in order, with their scores."""
    return [(hit["id"], hit["rerank_score"]) for hit in answer["results"]]


def urls_of(answer: dict[str, Any]) -> list[str]:
    return [hit["url"] for hit in answer["results"]]


def same_ranking(first: dict[str, Any], second: dict[str, Any]) -> bool:
    ids = [chunk for chunk, _ in chunk_ranking(first)]
    scores = [score for _, score in chunk_ranking(first)]
    return ids == [chunk for chunk, _ in chunk_ranking(second)] and scores == pytest.approx(
        [score for _, score in chunk_ranking(second)], rel=1e-4
    )


def test_both_replicas_run_on_the_one_postgres(replicas: Replicas) -> None:
    for url in replicas.urls:
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["status"] == "ok", health
        assert health["database"]["backend"] == "postgres" and health["database"]["schema_ready"], health
    vector = replicas.exec("postgres", "psql", "-U", "ragserver", "-d", "ragserver", "-tAc",
                           "SELECT extversion FROM pg_extension WHERE extname = 'vector'")  # fmt: skip
    assert vector, "the vector extension is not installed in the replicas' database"
    assert replicas.exec("postgres", "id", "-u") != "0", "Postgres runs as root"


def test_an_upload_on_one_replica_is_found_alike_on_both(replicas: Replicas) -> None:
    upload(replicas.urls[0], "replicas.md", DOC)
    first, second = (query(url, f"Which code word do the replicas share? {PHRASE}") for url in replicas.urls)
    assert first["search_mode"] == "hybrid" and first["reranking_applied"] is True, first
    assert any(PHRASE in hit["content"] for hit in first["results"]), first
    assert same_ranking(first, second), (first, second)


def test_the_proxy_spreads_requests_over_both_replicas_with_the_same_answers(replicas: Replicas) -> None:
    direct = query(replicas.urls[1], f"Which code word do the replicas share? {PHRASE}")
    body = {"query": f"Which code word do the replicas share? {PHRASE}", "match_count": 5}
    served_by = set()
    for _ in range(2):  # round robin: two requests in a row reach both replicas
        answer = httpx.post(f"{replicas.proxy}/api/rag/query", json=body, headers=AUTH, timeout=60)
        assert answer.status_code == 200, answer.text
        assert same_ranking(answer.json(), direct), (answer.json(), direct)
        served_by.add(answer.headers["x-ragserver-replica"])
    assert served_by == {"replica-1", "replica-2"}


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_socketio_through_the_proxy_stays_on_its_replica(replicas: Replicas, transport: str) -> None:
    """Long polling is a series of requests on one session: each must reach the replica that holds it.

    The proxy's cookie sends them there; aiohttp's default cookie jar ignores cookies of an IP
    address, so the client gets one that keeps them, as a browser would.
    """
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        client = socketio.AsyncClient(http_session=http)
        await client.connect(replicas.proxy, auth={"token": API_KEY}, transports=[transport], wait_timeout=20)
        try:
            for _ in range(4):
                ack = await client.call("subscribe", {"progressId": f"none-{uuid.uuid4().hex}"}, timeout=20)
                assert ack["success"] is False and ack["error"] == "not_found", ack
            assert client.connected and client.transport() == transport
        finally:
            # abort: a clean close of the polling transport waits out the pending long poll (engine.io's ping interval)
            await client.eio.disconnect(abort=True)


@pytest.mark.asyncio
async def test_mcp_through_the_proxy(replicas: Replicas) -> None:
    async with http_session(replicas.proxy, API_KEY) as client:
        answer = await call(client, "rag_search_knowledge_base", {"query": PHRASE, "return_mode": "chunks"})
        assert any(PHRASE in hit["content"] for hit in answer["results"]), answer


# An MCP protocol version with sessions, which many clients still speak: the replica that answered
# `initialize` alone knows the Mcp-Session-Id it returned (the others answer 404 "Session not found").
SESSION_PROTOCOL = "2025-06-18"


def mcp_request(proxy: str, message: dict[str, Any], session: dict[str, str]) -> httpx.Response:
    """One JSON-RPC message over a new connection (so only the proxy's rule can pick the replica)."""
    headers = {
        **AUTH,
        **session,
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": SESSION_PROTOCOL,
    }
    return httpx.post(f"{proxy}/mcp", json={"jsonrpc": "2.0", **message}, headers=headers, timeout=30)


def test_an_mcp_session_through_the_proxy_stays_on_its_replica(replicas: Replicas) -> None:
    hello = {"protocolVersion": SESSION_PROTOCOL, "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}
    opened = mcp_request(replicas.proxy, {"id": 1, "method": "initialize", "params": hello}, {})
    assert opened.status_code == 200, opened.text
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
    served_by = []
    for request_id in range(2, 6):
        listed = mcp_request(replicas.proxy, {"id": request_id, "method": "tools/list"}, session)
        assert listed.status_code == 200 and "rag_search_knowledge_base" in listed.text, listed.text
        served_by.append(listed.headers["x-ragserver-replica"])
    assert served_by == [opened.headers["x-ragserver-replica"]] * 4


def held_site(hold: threading.Event) -> dict[str, Route]:
    """Home links an early page and one that waits for `hold`: the crawl stays running until then."""
    last = page("Last", "<p>the lighthouse keeper arrives last</p>")
    last.hold = hold
    return {
        "/": page("Home", "<p>welcome to the harbour of the replicas</p>", ["early.html", "last.html"]),
        "/early.html": page("Early", f"<p>the ferry timetable {CRAWLED_WORD} is posted early</p>"),
        "/last.html": last,
    }


def home_and_early_crawled(state: dict[str, Any]) -> bool:
    return bool(state["counts"].get("pages_crawled", 0) >= 2)


async def search(client: httpx.AsyncClient, text: str) -> dict[str, Any]:
    answer = await client.post("/api/rag/query", json={"query": text, "match_count": 5})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


@pytest.mark.asyncio
async def test_a_crawl_on_one_replica_is_followed_and_stopped_from_the_other(replicas: Replicas) -> None:
    """Replica 2 follows the crawl over HTTP and Socket.IO (its events come through Redis) and stops it."""
    hold = threading.Event()
    events: list[dict[str, Any]] = []
    follower = socketio.AsyncClient()
    follower.on("progress", events.append)
    with FixtureSite(held_site(hold)) as site:
        early = site.url("/early.html")
        async with (
            httpx.AsyncClient(base_url=replicas.urls[0], headers=AUTH, timeout=60) as first,
            httpx.AsyncClient(base_url=replicas.urls[1], headers=AUTH, timeout=60) as second,
        ):
            try:
                started = await first.post("/api/knowledge-items/crawl", json={"url": site.url("/"), "max_depth": 1})
                assert started.status_code == 200, started.text
                progress_id = started.json()["progressId"]
                await follower.connect(replicas.urls[1], auth={"token": API_KEY}, wait_timeout=20)
                ack = await follower.call("subscribe", {"progressId": progress_id}, timeout=20)
                assert ack["success"] is True, ack
                running = await wait_operation(second, progress_id, home_and_early_crawled)
                assert running["status"] == "running", running  # the last page is still held
                await apoll_until(lambda: search(second, CRAWLED_QUERY), lambda answer: early in urls_of(answer),
                                  what="the early page searchable on replica 2 during the crawl")  # fmt: skip
                stopped = await second.post(f"/api/knowledge-items/stop/{progress_id}")
                assert stopped.status_code == 200 and stopped.json()["cancelled"] is True, stopped.text
                assert (await wait_operation(first, progress_id))["status"] == "cancelled"
                final = await apoll_state(lambda: [event for event in events if event["status"] == "cancelled"], bool,
                                          what="the cancelled event on replica 2's socket")  # fmt: skip
                assert final[0]["progressId"] == progress_id
            finally:
                hold.set()
                await follower.disconnect()
    answers = [query(url, CRAWLED_QUERY) for url in (*replicas.urls, replicas.proxy)]
    for answer in answers:
        assert early in urls_of(answer), answer  # a stopped first crawl keeps what it stored
        assert site.url("/last.html") not in urls_of(answer), answer
        assert same_ranking(answer, answers[0]), (answer, answers[0])
