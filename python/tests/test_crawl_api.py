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
    ("body", "words"),
    [
        ({"url": ""}, "url"),
        ({"url": "https://example.org", "max_depth": 99}, "max_depth"),
        ({"url": "https://example.org", "max_pages": 0}, "max_pages"),
        ({"url": "https://example.org", "include_patterns": ["/[unclosed/"]}, "'/[unclosed/' is not a valid regular"),
        ({"url": "https://example.org", "exclude_patterns": ["/(?P<x/"]}, "exclude_patterns"),
        ({"url": "https://example.org", "scope": "everything"}, "scope: Input should be 'subpages', 'hostname'"),
        ({"url": "https://example.org", "headers": {"X-Key": "s3cret\r\nX-Evil: 1"}}, "value of header 'X-Key'"),
        ({"url": "https://example.org", "headers": {"Content-Length": "0"}}, "header 'Content-Length' is set by"),
        ({"url": "https://example.org", "headers": {"X-Key": 7}}, "headers.X-Key"),
    ],
)
async def test_bad_crawl_requests_answer_422(api: RunningApp, body: dict[str, Any], words: str) -> None:
    before = (await api.client.get("/api/rag/sources")).json()["sources"]
    reply = await api.client.post("/api/knowledge-items/crawl", json=body)
    assert reply.status_code == 422 and reply.json()["error"] == "validation_error"
    assert words in reply.json()["message"], reply.text
    assert "s3cret" not in reply.text and "X-Evil" not in reply.text
    assert (await api.client.get("/api/rag/sources")).json()["sources"] == before  # nothing stored changed


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
                # enough text besides its 60 links that it is a page, not a link page (those are not stored)
                slow = page(
                    "slow", "<p>" + "A slow version of the page. " * 60 + "</p>", [f"/slow{i}.html" for i in range(60)]
                )
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
            assert item["last_run_error"].startswith("stopped before it finished; previous content")  # words


async def test_stopping_a_finished_crawl_is_harmless(api_settings: Settings) -> None:
    settings = dataclasses.replace(api_settings, crawl_allowed_hosts="127.0.0.1", crawl_per_host_delay_ms=0)
    async with running_app(settings) as app:
        with FixtureSite({"/": page("One page", "<p>just one page here</p>")}) as site:
            started = (await app.client.post("/api/knowledge-items/crawl", json={"url": site.url("/")})).json()
            assert (await wait_operation(app.client, started["progressId"]))["status"] == "completed"
            stop = (await app.client.post(f"/api/knowledge-items/stop/{started['progressId']}")).json()
            assert stop["cancelled"] is False


async def test_crawl_headers_reach_the_site_and_no_answer_shows_them(api_settings: Settings) -> None:
    """Every route that shows a source, its pages, hits or the crawl's progress; the store keeps them for a refresh."""
    token = "Bearer api-s3cret-7f2c"
    settings = dataclasses.replace(api_settings, crawl_allowed_hosts="127.0.0.1", crawl_per_host_delay_ms=0)
    routes = {
        "/docs/": page("Private docs", "<p>The private quokka handbook.</p>", ["a.html", "../outside.html"]),
        "/docs/a.html": page("Quokka care", "<p>Quokkas like shade and leaves.</p>"),
        "/outside.html": page("Outside", "<p>Out of the subpages scope.</p>"),
    }
    async with running_app(settings) as app:
        client = app.client
        with FixtureSite(routes) as site:
            body = {"url": site.url("/docs/"), "scope": "subpages", "headers": {"Authorization": token}}
            body |= {"library": "quokka", "version": "1"}
            started = await client.post("/api/knowledge-items/crawl", json=body)
            assert started.status_code == 200, started.text
            progress_id, source_id = started.json()["progressId"], started.json()["source_id"]
            snap = await wait_operation(client, progress_id)
            assert snap["status"] == "completed" and snap["counts"]["pages_crawled"] == 2, snap
            assert {path for path, _ in site.requests} >= {"/docs/", "/docs/a.html"}
            assert "/outside.html" not in {path for path, _ in site.requests}
            assert {headers.get("Authorization") for _, headers in site.requests} == {token}

            pages = await client.get("/api/pages", params={"source_id": source_id})
            page_id = pages.json()["pages"][0]["page_id"]
            answers = [
                started,
                await client.get(f"/api/progress/{progress_id}"),
                await client.get("/api/progress/"),
                await client.get("/api/rag/sources"),
                await client.get("/api/rag/sources", params={"library": "quokka"}),
                await client.get("/api/knowledge-items", params={"per_page": 200}),
                pages,
                await client.get(f"/api/pages/{page_id}"),
                await client.get("/api/pages/by-url", params={"url": site.url("/docs/a.html")}),
                await client.post("/api/rag/query", json={"query": "quokka shade", "source": source_id}),
                await client.post("/api/rag/query", json={"query": "quokka", "return_mode": "pages"}),
            ]
            for answer in answers:
                assert answer.status_code == 200, answer.text
                assert token not in answer.text and "s3cret" not in answer.text, answer.request.url
            source = next(s for s in answers[3].json()["sources"] if s["source_id"] == source_id)
            assert source["metadata"]["crawl"]["headers"] == {"Authorization": "***"}
            assert source["metadata"]["crawl"]["scope"] == "subpages"

            stored = await app.runtime.store.get_source(source_id)
            assert stored["metadata"]["crawl"]["headers"] == {"Authorization": token}  # for a refresh
            site.requests.clear()
            refresh = await client.post(f"/api/knowledge-items/{source_id}/refresh")
            assert refresh.status_code == 200 and token not in refresh.text
            assert (await wait_operation(client, refresh.json()["progressId"]))["status"] == "completed"
            assert site.requests and {headers.get("Authorization") for _, headers in site.requests} == {token}
            assert "/outside.html" not in {path for path, _ in site.requests}  # the refresh keeps the scope too
