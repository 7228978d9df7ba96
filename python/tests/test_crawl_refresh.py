"""A first crawl searchable as it goes, partial crawls, and incremental refresh, on real parts:
fixture site on 127.0.0.1 -> crawler -> IngestService (real MiniLM embeddings) -> Postgres.

Pages still on their way are held by an event of the fixture site (Route.hold), never by a
sleep; waits poll the store until what is asserted holds.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.crawl_rig import Rig, finished, make_rig, row_counts, stored_pages
from support.polling import apoll_until
from support.site_fixtures import FixtureSite, Route, page

from ragserver.config import Settings
from ragserver.crawl.request import CrawlRequest
from ragserver.crawl.service import source_id_for
from ragserver.domain import SearchHit

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def rig(store, pg_settings: Settings, ml_service, ml_settings: Settings, tmp_path: Path) -> Rig:
    # a batch is stored 0.2 s after its first page came, full or not (INGEST_FLUSH_S)
    return make_rig(store, pg_settings, ml_service, ml_settings, tmp_path, ingest_flush_s=0.2)


def tagged(route: Route, etag: str) -> Route:
    route.etag = etag
    return route


def held_site(hold: threading.Event) -> dict[str, Route]:
    """Home links an early page and a last page that waits for `hold`."""
    last = page("Last", "<p>the lighthouse keeper arrives last</p>")
    last.hold = hold
    return {
        "/": page("Home", "<p>welcome to the harbour</p>", ["early.html", "last.html"]),
        "/early.html": page("Early", "<p>the ferry timetable is posted early</p>"),
        "/last.html": last,
    }


async def search(rig: Rig, text: str, source_id: str) -> list[SearchHit]:
    return await rig.store.hybrid_search(text, None, None, match_count=5, source_id=source_id, rrf_k=60, candidates=20)


async def listed(rig: Rig, source_id: str) -> dict[str, Any]:
    listing = await rig.store.list_sources()
    return next(item for item in listing["items"] if item["source_id"] == source_id)


async def test_a_first_crawl_is_searchable_before_it_ends(rig: Rig) -> None:
    hold = threading.Event()
    with FixtureSite(held_site(hold)) as site:
        source_id = source_id_for(site.url("/"))
        op = await rig.crawl.start_crawl(CrawlRequest(url=site.url("/")))
        try:
            hits = await apoll_until(
                lambda: search(rig, "ferry timetable", source_id), bool, what="the early page searchable"
            )
            assert hits[0].url == site.url("/early.html")
            assert op.status == "running", "the last page is still held: the crawl has not ended"
            item = await listed(rig, source_id)
            assert item["partial"] and item["last_run_status"] == "running"
            assert item["page_count"] >= 2 and item["chunk_count"] >= 2  # counted live
            assert not await search(rig, "lighthouse keeper", source_id)
        finally:
            hold.set()
        assert (await finished(op)).status == "completed", op.error
        assert (await search(rig, "lighthouse keeper", source_id))[0].url == site.url("/last.html")
    item = await listed(rig, source_id)
    assert not item["partial"] and item["last_run_status"] == "completed" and item["page_count"] == 3
    assert (await row_counts(rig.settings, source_id))[1] == ["completed"]


async def test_an_interrupted_first_crawl_keeps_its_pages_as_partial_and_a_refresh_completes_it(rig: Rig) -> None:
    hold = threading.Event()
    with FixtureSite(held_site(hold)) as site:
        source_id = source_id_for(site.url("/"))
        op = await rig.crawl.start_crawl(CrawlRequest(url=site.url("/")))
        try:
            await apoll_until(lambda: search(rig, "ferry timetable", source_id), bool, what="the early page searchable")
            assert rig.tracker.cancel(op.id)
            assert (await finished(op)).status == "cancelled"
        finally:
            hold.set()
        kept = await stored_pages(rig.settings, source_id)
        assert sorted(kept) == [site.url("/"), site.url("/early.html")]
        item = await listed(rig, source_id)
        assert item["partial"] and item["last_run_status"] == "partial" and item["page_count"] == 2
        assert (await search(rig, "ferry timetable", source_id))[0].url == site.url("/early.html")

        refresh = await rig.crawl.start_refresh(source_id)
        assert (await finished(refresh)).status == "completed", refresh.error
        assert sorted(await stored_pages(rig.settings, source_id)) == [
            site.url(p) for p in ("/", "/early.html", "/last.html")
        ]
    item = await listed(rig, source_id)
    assert not item["partial"] and item["last_run_status"] == "completed" and item["page_count"] == 3
    total, runs = await row_counts(rig.settings, source_id)
    assert total == 3 and runs == ["partial", "completed"], "the partial generation was replaced, not added to"


async def test_a_first_crawl_stopped_by_a_dead_process_is_partial_after_recovery(rig: Rig) -> None:
    """The server was killed mid-crawl: at the next start recover_interrupted_runs keeps what it wrote."""
    hold = threading.Event()
    with FixtureSite(held_site(hold)) as site:
        source_id = source_id_for(site.url("/"))
        op = await rig.crawl.start_crawl(CrawlRequest(url=site.url("/")))
        try:
            await apoll_until(lambda: search(rig, "ferry timetable", source_id), bool, what="the early page searchable")
            async with await psycopg.AsyncConnection.connect(rig.settings.database_url, autocommit=True) as conn:
                # the owner is gone as far as the database can tell: its lock key is one nobody holds
                await conn.execute("UPDATE rag_runs SET owner_lock = 42 WHERE source_id = %s", (source_id,))
            assert await rig.store.recover_interrupted_runs() == 1
        finally:
            hold.set()
        await finished(op)  # its next write finds the run no longer running and fails
        assert op.status == "failed"
    item = await listed(rig, source_id)
    assert item["partial"] and item["last_run_status"] == "partial"
    assert item["last_run_error"] == "interrupted: the process running it stopped"
    assert (await search(rig, "ferry timetable", source_id))[0].url == site.url("/early.html")


def versioned_site() -> dict[str, Route]:
    return {
        "/": tagged(page("Home", "<p>the orchard opens in spring</p>", ["apples.html", "pears.html"]), '"home-1"'),
        "/apples.html": tagged(page("Apples", "<p>apples ripen in september</p>"), '"apples-1"'),
        "/pears.html": tagged(page("Pears", "<p>pears keep in a cool cellar</p>", ["plums.html"]), '"pears-1"'),
        "/plums.html": tagged(page("Plums", "<p>plums are jammed in august</p>"), '"plums-1"'),
    }


async def test_a_refresh_of_an_unchanged_site_carries_every_page_without_embedding(rig: Rig, ml_service) -> None:
    with FixtureSite(versioned_site()) as site:
        source_id = source_id_for(site.url("/"))
        first = await rig.crawl.crawl(CrawlRequest(url=site.url("/")))
        assert first["pages_new"] == 4 and first["pages_unchanged"] == 0
        vectors, batches = await rig.store.embedding_counts(), ml_service.batches_run["embedder"]

        op = await rig.crawl.start_refresh(source_id)
        assert (await finished(op)).status == "completed", op.error
        result = op.result or {}
        pages = ("/", "/apples.html", "/pears.html", "/plums.html")
        assert {path: site.not_modified[path] for path in pages} == dict.fromkeys(pages, 1)
        # plums.html is linked only from pears.html, which answered 304: its stored links were followed
        assert sorted(await stored_pages(rig.settings, source_id)) == [site.url(p) for p in sorted(pages)]
    assert ml_service.batches_run["embedder"] == batches, "a carried page is not embedded again"
    assert result["pages_unchanged"] == 4 and result["pages_changed"] == result["pages_new"] == 0
    assert (
        result["pages_removed"] == 0 and result["chunks_carried"] == result["chunks_stored"] == first["chunks_stored"]
    )
    assert op.counts["pages_unchanged"] == 4
    assert await rig.store.embedding_counts() == vectors, "the new generation has every vector, the old one is gone"
    assert (await search(rig, "cool cellar", source_id))[0].url == site.url("/pears.html")
    assert (await row_counts(rig.settings, source_id))[1] == ["completed", "completed"]


async def test_a_refresh_processes_changed_and_new_pages_and_drops_removed_ones(rig: Rig, ml_service) -> None:
    with FixtureSite(versioned_site()) as site:
        source_id = source_id_for(site.url("/"))
        await rig.crawl.crawl(CrawlRequest(url=site.url("/")))
        # home changes (links quinces instead of pears, so pears and plums are gone from the site),
        # apples answers 304, plums comes back under a new ETag with the same body (now linked from home)
        site.set(
            "/",
            tagged(
                page("Home", "<p>the orchard opens in may</p>", ["apples.html", "quinces.html", "plums.html"]),
                '"home-2"',
            ),
        )
        site.set("/quinces.html", tagged(page("Quinces", "<p>quinces need a long autumn</p>"), '"quinces-1"'))
        site.set("/plums.html", tagged(page("Plums", "<p>plums are jammed in august</p>"), '"plums-2"'))
        batches = ml_service.batches_run["embedder"]

        op = await rig.crawl.start_refresh(source_id)
        assert (await finished(op)).status == "completed", op.error
        result = op.result or {}
        assert site.not_modified["/apples.html"] == 1 and site.not_modified["/plums.html"] == 0
        pages = await stored_pages(rig.settings, source_id)
    assert sorted(pages) == [site.url(p) for p in ("/", "/apples.html", "/plums.html", "/quinces.html")]
    assert "may" in pages[site.url("/")] and "long autumn" in pages[site.url("/quinces.html")]
    counts = {k: result[k] for k in ("pages_unchanged", "pages_changed", "pages_new", "pages_removed")}
    assert counts == {"pages_unchanged": 2, "pages_changed": 1, "pages_new": 1, "pages_removed": 1}
    assert {k: op.counts[k] for k in counts} == counts
    assert ml_service.batches_run["embedder"] > batches, "the changed and the new page were embedded"
    assert not await search(rig, "cool cellar", source_id), "the removed page is gone"
    async with await psycopg.AsyncConnection.connect(rig.settings.database_url) as conn:
        cur = await conn.execute(
            "SELECT p.etag FROM rag_pages p JOIN rag_sources s ON s.active_run_id = p.run_id WHERE p.url = %s",
            (site.url("/plums.html"),),
        )
        assert await cur.fetchone() == ('"plums-2"',), "a carried page keeps the validators of its new fetch"


async def test_the_previous_content_answers_while_a_refresh_runs(rig: Rig) -> None:
    with FixtureSite(versioned_site()) as site:
        source_id = source_id_for(site.url("/"))
        await rig.crawl.crawl(CrawlRequest(url=site.url("/")))
        hold = threading.Event()
        site.set("/", tagged(page("Home", "<p>the orchard closes for winter</p>", ["apples.html"]), '"home-2"'))
        held = tagged(page("Apples", "<p>apples are sold out</p>"), '"apples-2"')
        held.hold = hold
        site.set("/apples.html", held)

        op = await rig.crawl.start_refresh(source_id)
        try:
            await apoll_until(
                lambda: staged_pages(rig, source_id), lambda n: n >= 1, what="the refresh wrote its first page"
            )
            assert (await search(rig, "orchard spring", source_id))[0].url == site.url("/")
            assert not await search(rig, "closes winter", source_id)
            assert not (await listed(rig, source_id))["partial"]
        finally:
            hold.set()
        assert (await finished(op)).status == "completed", op.error
        assert (await search(rig, "closes winter", source_id))[0].url == site.url("/")


async def staged_pages(rig: Rig, source_id: str) -> int:
    """Pages the source's running run has written so far."""
    async with await psycopg.AsyncConnection.connect(rig.settings.database_url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM rag_pages p JOIN rag_runs r ON r.run_id = p.run_id "
            "WHERE r.source_id = %s AND r.status = 'running'",
            (source_id,),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def test_a_crawl_with_other_content_rules_fetches_every_page_whole(rig: Rig) -> None:
    with FixtureSite(versioned_site()) as site:
        source_id = source_id_for(site.url("/"))
        await rig.crawl.crawl(CrawlRequest(url=site.url("/")))
        # the same site again, its link lists now chrome: a 304 would keep them in the stored pages
        again = await rig.crawl.crawl(CrawlRequest(url=site.url("/"), exclude_selectors=["ul"]))
        assert sum(site.not_modified.values()) == 0, "no conditional request: every page fetched whole"
        # converted anew: the pages with a list changed, the others hash to what was stored
        assert (again["pages_changed"], again["pages_unchanged"]) == (2, 2)
        pages = await stored_pages(rig.settings, source_id)
    assert "apples.html" not in pages[site.url("/")] and "spring" in pages[site.url("/")]
