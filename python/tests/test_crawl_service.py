"""CrawlService end to end on real parts: fixture site on 127.0.0.1 -> crawler -> IngestService
(real MiniLM embeddings) -> embedded Postgres. Every test asserts what is stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from support.crawl_rig import Rig, finished, make_rig, pushed_count_reached, row_counts, stored_pages
from support.site_fixtures import REACHABLE_PATHS, FixtureSite, Route, docs_site, page

from ragserver.config import Settings
from ragserver.crawl.request import CrawlRequest
from ragserver.crawl.service import CrawlService, source_id_for
from ragserver.errors import Busy, TargetRefused

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def crawl_rig(store, pg_settings: Settings, ml_service, ml_settings: Settings, tmp_path: Path) -> Rig:
    return make_rig(store, pg_settings, ml_service, ml_settings, tmp_path)


async def test_crawl_stores_pages_chunks_embeddings_and_code(crawl_rig: Rig) -> None:
    with docs_site() as site:
        result = await crawl_rig.crawl.crawl(CrawlRequest(url=site.url("/"), max_depth=2))
        source_id = source_id_for(site.url("/"))
        pages = await stored_pages(crawl_rig.settings, source_id)
        assert sorted(pages) == sorted(site.url(p) for p in REACHABLE_PATHS)
        assert "def hello(name):" in pages[site.url("/docs/intro.html")]
    assert result["source_id"] == source_id and result["pages_crawled"] == len(pages)
    source = await crawl_rig.store.get_source(source_id)
    assert source["origin"] == site.url("/") and source["metadata"]["crawl"]["max_depth"] == 2
    listing = await crawl_rig.store.list_sources()
    item = next(i for i in listing["items"] if i["source_id"] == source_id)
    assert item["page_count"] == len(pages) and item["chunk_count"] >= len(pages)
    assert item["code_example_count"] >= 1
    hits = await crawl_rig.store.hybrid_search(
        "hello function greets", None, None, match_count=3, source_id=source_id, rrf_k=60, candidates=20
    )
    assert hits and hits[0].url == site.url("/docs/intro.html")
    counts = await crawl_rig.store.embedding_counts()
    assert counts.get(crawl_rig.settings.embedding_model, 0) >= item["chunk_count"]


def small_site(version: int, *, delay_s: float = 0.0, extra_pages: int = 0) -> dict[str, Route]:
    """A site whose pages change with `version`: page b exists only in v1, page c only from v2 on."""
    links = ["a.html", "b.html" if version == 1 else "c.html"] + [f"p{i}.html" for i in range(extra_pages)]
    routes = {
        "/": page("Home", f"<p>home version {version}</p>", links),
        "/a.html": page("A", f"<p>page a says version {version}</p>"),
        "/b.html" if version == 1 else "/c.html": page("B or C", f"<p>only in version {version}</p>"),
    }
    for i in range(extra_pages):
        routes[f"/p{i}.html"] = page(f"P{i}", f"<p>filler {i}</p>")
    for route in routes.values():
        route.delay_s = delay_s
    return routes


async def test_refresh_replaces_the_pages_atomically(crawl_rig: Rig) -> None:
    with FixtureSite(small_site(1)) as site:
        op = await crawl_rig.crawl.start_crawl(CrawlRequest(url=site.url("/"), tags=["t1"]))
        assert (await finished(op)).status == "completed", op.error
        source_id = source_id_for(site.url("/"))
        assert sorted(await stored_pages(crawl_rig.settings, source_id)) == [
            site.url(p) for p in ("/", "/a.html", "/b.html")
        ]

        for path, route in small_site(2).items():
            site.set(path, route)
        op = await crawl_rig.crawl.start_refresh(source_id)
        assert (await finished(op)).status == "completed", op.error
        pages = await stored_pages(crawl_rig.settings, source_id)
        assert sorted(pages) == [site.url(p) for p in ("/", "/a.html", "/c.html")]
        assert "version 2" in pages[site.url("/a.html")]
        total, runs = await row_counts(crawl_rig.settings, source_id)
        assert total == 3 and runs == ["completed", "completed"]  # the old generation is gone
        assert (await crawl_rig.store.get_source(source_id))["tags"] == ["t1"]


async def test_stopped_refresh_keeps_the_previous_content(crawl_rig: Rig) -> None:
    with FixtureSite(small_site(1)) as site:
        source_id = source_id_for(site.url("/"))
        await crawl_rig.crawl.crawl(CrawlRequest(url=site.url("/")))
        before = await stored_pages(crawl_rig.settings, source_id)

        for path, route in small_site(2, delay_s=0.3, extra_pages=40).items():
            site.set(path, route)
        three_pages = pushed_count_reached(crawl_rig.tracker, "pages_crawled", 3)
        op = await crawl_rig.crawl.start_refresh(source_id)
        async with asyncio.timeout(60):
            await three_pages.wait()
        assert crawl_rig.tracker.cancel(op.id)
        assert (await finished(op)).status == "cancelled"
        assert await stored_pages(crawl_rig.settings, source_id) == before
        total, runs = await row_counts(crawl_rig.settings, source_id)
        assert total == len(before) and runs == ["completed", "cancelled"]  # staged rows removed


async def test_failed_refresh_keeps_the_previous_content(crawl_rig: Rig) -> None:
    with FixtureSite(small_site(1)) as site:
        source_id = source_id_for(site.url("/"))
        await crawl_rig.crawl.crawl(CrawlRequest(url=site.url("/")))
        before = await stored_pages(crawl_rig.settings, source_id)
        for path in list(site.routes):
            site.set(path, Route("down for maintenance", status=503))
        op = await crawl_rig.crawl.start_refresh(source_id)
        assert (await finished(op)).status == "failed"
        assert "no page could be crawled" in (op.error or "")
        assert await stored_pages(crawl_rig.settings, source_id) == before
        assert (await row_counts(crawl_rig.settings, source_id))[1] == ["completed", "failed"]


async def test_refused_targets_are_4xx_before_anything_runs(crawl_rig: Rig) -> None:
    strict = CrawlService(
        crawl_rig.store, None, dataclasses.replace(crawl_rig.settings, crawl_allowed_hosts=""), crawl_rig.tracker
    )
    for url in ("http://127.0.0.1:9/", "file:///etc/passwd", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(TargetRefused) as caught:
            await strict.start_crawl(CrawlRequest(url=url))
        assert caught.value.status_code == 400
    assert not crawl_rig.tracker.list()  # no operation was started


async def test_a_source_is_crawled_by_one_run_at_a_time(crawl_rig: Rig) -> None:
    with FixtureSite(small_site(1, delay_s=0.3, extra_pages=20)) as site:
        first = await crawl_rig.crawl.start_crawl(CrawlRequest(url=site.url("/")))
        with pytest.raises(Busy) as caught:
            await crawl_rig.crawl.start_crawl(CrawlRequest(url=site.url("/index.html")))  # same canonical URL
        assert caught.value.status_code == 429 and caught.value.details["progressId"] == first.id
        first.cancel()
        assert (await finished(first)).status == "cancelled"
        second = await crawl_rig.crawl.start_crawl(CrawlRequest(url=site.url("/")))
        assert (await finished(second)).status == "completed", second.error
