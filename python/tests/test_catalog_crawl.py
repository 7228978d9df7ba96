"""A crawl labelled with a library and version, browsed through the catalog and searched by its labels:
fixture site on 127.0.0.1 -> CrawlService -> IngestService (real MiniLM) -> embedded Postgres."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from support.site_fixtures import FixtureSite, crawl_settings, page

from ragserver.catalog import CatalogService
from ragserver.config import Settings
from ragserver.crawl.request import CrawlRequest
from ragserver.crawl.service import CrawlService, source_id_for
from ragserver.ingest.service import IngestService
from ragserver.progress import ProgressTracker
from ragserver.search.service import SearchService
from ragserver.store import Store

pytestmark = pytest.mark.timeout(180)

SITE = {
    "/": page("Widget docs", "<p>Widgets are configured per project.</p>", ["guide/setup.html", "api/widget.html"]),
    "/guide/setup.html": page("Setup", "<h1>Setting up widgets</h1><p>Install the widget package first.</p>"),
    "/api/widget.html": page("Widget API", "<h1>Widget class</h1><p>The widget class renders frames.</p>"),
}


async def test_crawl_labels_its_source_and_refresh_keeps_the_labels(
    store: Store, pg_settings: Settings, ml_service, ml_settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(
        crawl_settings(tmp_path), database_url=pg_settings.database_url, embedding_model=ml_settings.embedding_model
    )
    tracker = ProgressTracker()
    crawl = CrawlService(store, IngestService(store, ml_service, settings, tracker), settings, tracker)
    catalog = CatalogService(store)
    search = SearchService(store, ml_service, dataclasses.replace(settings, use_reranking=False))
    try:
        with FixtureSite(SITE) as site:
            request = CrawlRequest(url=site.url("/"), max_depth=1, library=" Widgets ", version="2.1")
            await crawl.crawl(request)
            source_id = source_id_for(site.url("/"))
            [source] = await catalog.sources(library="widgets", version="2.1")
            assert (source.source_id, source.library, source.version) == (source_id, "Widgets", "2.1")
            assert "library" not in source.metadata["crawl"], "labels live on the source, not in the crawl options"

            guide = await catalog.pages(source_id, section="/guide/")
            assert [p.url for p in guide.pages] == [site.url("/guide/setup.html")] and guide.total == 1
            assert guide.pages[0].section_title == "Setting up widgets"
            assert (await catalog.pages(source_id)).total == 3

            labelled = await search.query("widget class renders frames", library="WIDGETS", version="2.1")
            assert labelled.results and {r.source_id for r in labelled.results} == {source_id}
            assert (await search.query("widget class renders frames", library="gadgets")).results == []
            examples = await search.code_examples("widget", version="1.0")
            assert examples.results == []

            op = await crawl.start_refresh(source_id)
            async with asyncio.timeout(120):
                await op.ended()
            assert op.status == "completed", op.error
            [refreshed] = await catalog.sources(library="Widgets", version="2.1")
            assert refreshed.source_id == source_id and refreshed.last_run_id != source.last_run_id
    finally:
        crawl.close()
