"""Main content only, words not URLs, index pages followed but not stored: real crawls of the
fixture docs sites (support.doc_sites) through the crawler, then the store for one of them.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import psycopg
import pytest
from support.crawl_rig import Rig, make_rig, stored_pages
from support.doc_sites import (
    BODY_WORDS,
    CHROME_WORDS,
    CODE_URL,
    CONTENT_PATHS,
    IMAGE_ALT,
    INDEX_PATH,
    LAYOUTS,
    LINK_WORDS,
    doc_site,
)
from support.site_fixtures import FixtureSite, Route, crawl, crawl_settings

from ragserver.config import Settings
from ragserver.crawl.request import CrawlRequest
from ragserver.crawl.service import source_id_for
from ragserver.domain import Document
from ragserver.ingest.chunk import chunk_document
from ragserver.ingest.parse import parse_bytes

pytestmark = pytest.mark.timeout(120)
URL_IN_TEXT = re.compile(r"https?://|\]\(")


def words(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def chunk_texts(doc: Document) -> list[str]:
    chunks, _ = chunk_document(doc, max_tokens=60, count_tokens=words)
    return [chunk.content for chunk in chunks]


def without_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.DOTALL)


def assert_content_only(text: str, path: str) -> None:
    lowered = text.lower()
    for kind, word in CHROME_WORDS.items():
        assert word not in lowered, f"{kind} chrome ({word}) left in {path}"
    assert BODY_WORDS[path] in lowered


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_only_main_content_is_kept_and_index_pages_are_followed_not_stored(layout: str, tmp_path: Path) -> None:
    with doc_site(layout) as site:
        docs, crawler = await crawl(crawl_settings(tmp_path), site.url(INDEX_PATH), max_depth=1)
    by_path = {doc.url.removeprefix(site.base): doc for doc in docs}

    # the index (a table of contents) was fetched and followed: advanced.html is linked from it alone
    assert sorted(by_path) == sorted(CONTENT_PATHS)
    assert site.hits[INDEX_PATH] == 1
    assert crawler.stats.link_dense == 1 and crawler.stats.counts()["pages_skipped_link_dense"] == 1
    assert crawler.stats.skipped >= 1

    titles = {path: doc.title for path, doc in by_path.items()}
    assert titles["/guide/install.html"].startswith("Installing widgets")
    for path, doc in by_path.items():
        assert_content_only(doc.markdown, path)
        assert "¶" not in doc.markdown  # heading permalinks go
        assert f"({site.base}/api/factory.html)" in doc.markdown  # the stored markdown keeps its links
        chunks = chunk_texts(doc)
        joined = "\n".join(chunks)
        assert_content_only(joined, path)
        assert LINK_WORDS in joined and IMAGE_ALT in joined  # link words and alt text, without their targets
        assert not URL_IN_TEXT.search(without_code(joined)), joined
        assert CODE_URL in joined and "```bash" in joined  # a URL inside code stays, fenced with its language


async def test_keep_link_pages_stores_the_index_too(tmp_path: Path) -> None:
    with doc_site("sphinx") as site:
        docs, crawler = await crawl(crawl_settings(tmp_path), site.url(INDEX_PATH), max_depth=1, keep_link_pages=True)
    assert sorted(doc.url.removeprefix(site.base) for doc in docs) == sorted([INDEX_PATH, *CONTENT_PATHS])
    assert crawler.stats.link_dense == 0
    index = next(doc for doc in docs if doc.url == site.url(INDEX_PATH))
    assert index.metadata["link_dense"] is True and index.metadata["link_share"] > 0.75
    assert "Overview of the advanced chapter" in "\n".join(chunk_texts(index))


async def test_selector_overrides_pick_the_content_and_cut_more(tmp_path: Path) -> None:
    with doc_site("blog") as site:
        url = site.url("/guide/usage.html")
        default, _ = await crawl(crawl_settings(tmp_path), url, max_depth=0)
        narrowed, _ = await crawl(
            crawl_settings(tmp_path), url, max_depth=0, content_selector="div.entry-content", exclude_selectors=["ul"]
        )
        cut, _ = await crawl(crawl_settings(tmp_path), url, max_depth=0, exclude_selectors=[".meta", "img"])
    assert "Posted on 1 May" in default[0].markdown and "# Using widgets" in default[0].markdown
    assert "sprocket state" in default[0].markdown
    # only the entry's content: no heading, no byline, and its list cut
    assert "Posted on" not in narrowed[0].markdown and "# Using widgets" not in narrowed[0].markdown
    assert "sprocket handling" in narrowed[0].markdown and "sprocket state" not in narrowed[0].markdown
    assert "Posted on" not in cut[0].markdown and IMAGE_ALT not in cut[0].markdown
    assert "# Using widgets" in cut[0].markdown


async def test_a_content_selector_that_matches_nothing_falls_back_to_the_layouts(tmp_path: Path) -> None:
    with doc_site("docusaurus") as site:
        docs, _ = await crawl(
            crawl_settings(tmp_path), site.url("/api/factory.html"), max_depth=0, content_selector="#no-such-element"
        )
    assert_content_only(docs[0].markdown, "/api/factory.html")


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_an_uploaded_page_converts_as_the_crawled_one(layout: str, tmp_path: Path) -> None:
    with doc_site(layout) as site:
        url = site.url("/guide/install.html")
        with urllib.request.urlopen(url, timeout=5) as answer:  # the bytes the crawler got
            served = answer.read()
        crawled, _ = await crawl(crawl_settings(tmp_path), url, max_depth=0)
    (uploaded,) = parse_bytes(served, "install.html", "html")
    assert uploaded.markdown == crawled[0].markdown
    assert uploaded.title == crawled[0].title
    assert chunk_texts(uploaded) == chunk_texts(crawled[0])


async def test_a_page_whose_main_element_is_empty_still_yields_its_text(tmp_path: Path) -> None:
    routes = {
        "/empty-main.html": Route(
            "<html><head><title>Odd page</title></head><body><nav><a href='/'>home</a></nav><main> </main>"
            "<div class='content'><p>The quartz oscillator text lives outside main.</p></div></body></html>"
        ),
        "/chrome-only.html": Route(
            "<html><body><nav>Only the hyacinth menu has words here</nav><main></main></body></html>"
        ),
    }
    with FixtureSite(routes) as site:
        first, _ = await crawl(crawl_settings(tmp_path), site.url("/empty-main.html"), max_depth=0)
        second, _ = await crawl(crawl_settings(tmp_path), site.url("/chrome-only.html"), max_depth=0)
    assert "quartz oscillator" in first[0].markdown and "home" not in first[0].markdown
    assert "hyacinth menu" in second[0].markdown  # nothing but chrome: the whole text, not an empty page


@pytest.fixture
def crawl_rig(store, pg_settings: Settings, ml_service, ml_settings: Settings, tmp_path: Path) -> Rig:
    return make_rig(store, pg_settings, ml_service, ml_settings, tmp_path)


async def test_stored_pages_and_chunks_hold_the_content_words_only(crawl_rig: Rig) -> None:
    with doc_site("mkdocs_material") as site:
        result = await crawl_rig.crawl.crawl(CrawlRequest(url=site.url(INDEX_PATH), max_depth=1))
        source_id = source_id_for(site.url(INDEX_PATH))
        pages = await stored_pages(crawl_rig.settings, source_id)
    assert sorted(pages) == sorted(site.url(path) for path in CONTENT_PATHS)
    assert result["pages_skipped_link_dense"] == 1
    async with await psycopg.AsyncConnection.connect(crawl_rig.settings.database_url) as conn:
        rows = await (
            await conn.execute(
                "SELECT p.url, c.content FROM rag_chunks c JOIN rag_pages p USING (page_id) "
                "JOIN rag_sources s ON s.active_run_id = c.run_id WHERE s.source_id = %s",
                (source_id,),
            )
        ).fetchall()
    chunks: dict[str, list[str]] = {}
    for url, content in rows:
        chunks.setdefault(url.removeprefix(site.base), []).append(content)
    assert sorted(chunks) == sorted(CONTENT_PATHS)
    for path, contents in chunks.items():
        assert_content_only(pages[site.url(path)], path)
        assert_content_only("\n".join(contents), path)
        assert not URL_IN_TEXT.search(without_code("\n".join(contents)))
    hits = await crawl_rig.store.hybrid_search(
        "flywheel handling", None, None, match_count=3, source_id=source_id, rrf_k=60, candidates=20
    )
    assert hits and hits[0].url == site.url("/guide/advanced.html")
