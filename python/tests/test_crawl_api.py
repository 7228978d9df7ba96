"""Crawl routes through the real app (store, tiny real models): start, progress, stored counts, query, refresh, stop."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from support.api_fixtures import RunningApp, running_app
from support.polling import wait_operation
from support.site_fixtures import FixtureSite, docs_site, page

from ragserver.config import Settings

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:8181/", "target_refused"),
        ("http://169.254.169.254/latest/meta-data/", "target_refused"),
        ("file:///etc/passwd", "target_refused"),
        ("javascript:alert(1)", "target_refused"),
    ],
)
async def test_refused_targets_answer_400(api: RunningApp, url: str, code: str) -> None:
    reply = await api.client.post("/api/knowledge-items/crawl", json={"url": url})
    assert reply.status_code == 400, reply.text
    assert reply.json()["success"] is False and reply.json()["error"] == code


@pytest.mark.parametrize(
    "body",
    [{"url": ""}, {"url": "https://example.org", "max_depth": 99}, {"url": "https://example.org", "max_pages": 0}],
)
async def test_bad_crawl_requests_answer_422(api: RunningApp, body: dict[str, Any]) -> None:
    reply = await api.client.post("/api/knowledge-items/crawl", json=body)
    assert reply.status_code == 422 and reply.json()["error"] == "validation_error"


async def test_refresh_of_an_unknown_source_is_404(api: RunningApp) -> None:
    reply = await api.client.post("/api/knowledge-items/no-such-source/refresh")
    assert reply.status_code == 404 and reply.json()["error"] == "not_found"


async def test_crawl_refresh_and_stop_through_the_api(api_settings: Settings) -> None:
    settings = dataclasses.replace(
        api_settings,
        crawl_allowed_hosts="127.0.0.1",
        crawl_per_host_delay_ms=0,
        crawl_timeout_s=2,
        crawl_max_page_bytes=100_000,
        crawl_max_retries=1,
    )
    async with running_app(settings) as app:
        client = app.client
        with docs_site() as site:
            started = await client.post(
                "/api/knowledge-items/crawl", json={"url": site.url("/"), "tags": ["fixture"], "max_depth": 2}
            )
            assert started.status_code == 200, started.text
            body = started.json()
            assert body["success"] is True and body["progressId"]
            snap = await wait_operation(client, body["progressId"])
            assert snap["status"] == "completed", snap
            assert snap["type"] == "crawl" and snap["counts"]["pages_crawled"] == 11
            assert snap["counts"]["pages_failed"] >= 4 and snap["counts"]["chunks_stored"] >= 11

            items = (await client.get("/api/knowledge-items", params={"per_page": 200})).json()["items"]
            item = next(i for i in items if i["source_id"] == body["source_id"])
            assert item["page_count"] == 11 and item["tags"] == ["fixture"] and item["last_run_status"] == "completed"

            # The test reranker has random weights, so only membership is meaningful, not the order.
            query = {"query": "hello function greets", "source": body["source_id"], "match_count": 20}
            answer = (await client.post("/api/rag/query", json=query)).json()
            assert site.url("/docs/intro.html") in [hit["url"] for hit in answer["results"]]

            # A refresh of a site that became slow, stopped midway: the first crawl's pages stay.
            for path in [p for p in site.routes if p.endswith(".html") or p == "/"]:
                slow = page("slow", "<p>slow version</p>", [f"/slow{i}.html" for i in range(60)])
                slow.delay_s = 0.3
                site.set(path, slow)
            refresh = (await client.post(f"/api/knowledge-items/{body['source_id']}/refresh")).json()
            await wait_operation(client, refresh["progressId"], lambda s: s["counts"].get("pages_crawled", 0) >= 2)
            stop = (await client.post(f"/api/knowledge-items/stop/{refresh['progressId']}")).json()
            assert stop["cancelled"] is True
            assert (await wait_operation(client, refresh["progressId"]))["status"] == "cancelled"
            items = (await client.get("/api/knowledge-items", params={"per_page": 200})).json()["items"]
            item = next(i for i in items if i["source_id"] == body["source_id"])
            assert item["page_count"] == 11 and item["last_run_status"] == "cancelled"


async def test_stopping_a_finished_crawl_is_harmless(api_settings: Settings) -> None:
    settings = dataclasses.replace(api_settings, crawl_allowed_hosts="127.0.0.1", crawl_per_host_delay_ms=0)
    async with running_app(settings) as app:
        with FixtureSite({"/": page("One page", "<p>just one page here</p>")}) as site:
            started = (await app.client.post("/api/knowledge-items/crawl", json={"url": site.url("/")})).json()
            assert (await wait_operation(app.client, started["progressId"]))["status"] == "completed"
            stop = (await app.client.post(f"/api/knowledge-items/stop/{started['progressId']}")).json()
            assert stop["cancelled"] is False
