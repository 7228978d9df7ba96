"""The crawler against a real HTTP site on 127.0.0.1 (support.site_fixtures): what it yields and fetches.

These tests look at the Documents the crawler hands to ingestion and at the requests the site
saw; test_crawl_service.py checks what ends up stored.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.clock import SteppedClock
from support.site_fixtures import REACHABLE_PATHS, FixtureSite, Route, crawl, crawl_settings, docs_site, page

from ragserver.crawl.fetch import Fetcher, SkippedPage
from ragserver.errors import CrawlError, TargetRefused

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def site():
    with docs_site() as running:
        yield running


async def test_site_crawl_stores_each_reachable_page_once(site: FixtureSite, tmp_path: Path) -> None:
    docs, crawler = await crawl(crawl_settings(tmp_path), site.url("/"), max_depth=2)
    urls = sorted(d.url for d in docs)
    expected = sorted(site.url(p) for p in REACHABLE_PATHS)
    assert urls == expected
    by_url = {d.url: d for d in docs}
    intro = by_url[site.url("/docs/intro.html")]
    assert intro.title == "Introduction"
    assert "```" in intro.markdown and "def hello(name):\n    return f'hello {name}'" in intro.markdown
    assert by_url[site.url("/llms.txt")].markdown.startswith("# Fixture Docs")

    # Duplicates were fetched once; robots.txt kept the crawler out of /private/.
    assert site.hits["/docs/intro.html"] == 1
    assert site.hits["/docs/api.html?b=2&a=1"] + site.hits["/docs/api.html?a=1&b=2"] == 1
    assert site.hits["/docs/guide/"] + site.hits["/docs/guide/index.html"] == 1
    assert not [p for p in site.hits if p.startswith("/private/")]
    # Too deep, binary by extension, off-site: never requested.
    assert site.hits["/docs/deep/level3.html"] == 0 and site.hits["/files/manual.pdf"] == 0
    # 500 retried once, 429 retried after Retry-After, then stored.
    assert site.hits["/broken.html"] == 2 and site.hits["/busy.html"] == 2

    stats = crawler.stats
    assert stats.crawled == len(expected)
    assert stats.robots_blocked >= 2
    errors = "\n".join(stats.errors)
    assert "HTTP 404" in errors and "HTTP 500" in errors
    assert "timed out" in errors  # the slow page
    assert "169.254.169.254" in errors and "metadata" in errors  # redirect to a metadata address refused
    assert stats.skipped >= 3  # redirect loop, binary download, oversized page


async def test_max_pages_and_depth_budgets(site: FixtureSite, tmp_path: Path) -> None:
    docs, _ = await crawl(crawl_settings(tmp_path), site.url("/"), max_depth=2, max_pages=3)
    assert len(docs) == 3 and len({d.url for d in docs}) == 3

    docs, _ = await crawl(crawl_settings(tmp_path), site.url("/docs/intro.html"), max_depth=0)
    assert [d.url for d in docs] == [site.url("/docs/intro.html")]


async def test_robots_can_be_ignored(site: FixtureSite, tmp_path: Path) -> None:
    settings = crawl_settings(tmp_path, crawl_respect_robots=False)
    docs, _ = await crawl(settings, site.url("/"), max_depth=1, include_patterns=["*/private/*"])
    # Patterns filter discovered links, never the start URL itself.
    assert sorted(d.url for d in docs) == [site.url(p) for p in ("/", "/private/hidden.html", "/private/secret.html")]


async def test_start_url_that_is_a_sitemap_index(site: FixtureSite, tmp_path: Path) -> None:
    docs, crawler = await crawl(crawl_settings(tmp_path), site.url("/sitemap_index.xml"), max_depth=2)
    assert sorted(d.url for d in docs) == sorted(
        site.url(p) for p in ["/docs/intro.html", "/only-in-sitemap.html", "/from-gz-sitemap.html"]
    )
    assert crawler.stats.robots_blocked == 1  # /private/hidden.html is listed but disallowed
    assert site.hits["/docs/deep/level2.html"] == 0  # a sitemap crawl does not follow links


async def test_llms_full_is_split_into_sections(site: FixtureSite, tmp_path: Path) -> None:
    docs, _ = await crawl(crawl_settings(tmp_path), site.url("/docs/llms-full.txt"))
    assert [(d.url, d.title) for d in docs] == [
        (site.url("/docs/first"), "First section"),
        (site.url("/docs/llms-full.txt#section-2"), "Second section"),
    ]
    assert "# not a heading" in docs[0].markdown  # a heading-like line inside a code fence does not split


async def test_text_start_url_is_one_page(site: FixtureSite, tmp_path: Path) -> None:
    site.set("/notes.md", Route("# Notes\n\nSee [intro](docs/intro.html).", content_type="text/markdown"))
    docs, _ = await crawl(crawl_settings(tmp_path), site.url("/notes.md"))
    assert [(d.url, d.title) for d in docs] == [(site.url("/notes.md"), "Notes")]
    assert site.hits["/docs/intro.html"] == 0


async def test_site_root_with_llms_full_uses_it_instead_of_crawling(tmp_path: Path) -> None:
    routes = {
        "/": page("Home", "<p>home</p>", ["a.html"]),
        "/a.html": page("A", "<p>a</p>"),
        "/llms-full.txt": Route("# One\n\nfirst\n\n# Two\n\nsecond\n", content_type="text/plain"),
    }
    with FixtureSite(routes) as site:
        docs, _ = await crawl(crawl_settings(tmp_path), site.url("/"))
        assert [d.title for d in docs] == ["One", "Two"]
        assert site.hits["/a.html"] == 0


async def test_a_crawl_that_stores_nothing_fails(tmp_path: Path) -> None:
    """So a refresh of a site that is down keeps the previous content instead of committing an empty run."""
    with FixtureSite({"/": Route("down", status=503)}) as site, pytest.raises(CrawlError, match=r"no page.*HTTP 503"):
        await crawl(crawl_settings(tmp_path, crawl_max_retries=0), site.url("/"))


async def test_loopback_is_refused_without_the_setting(site: FixtureSite, tmp_path: Path) -> None:
    with pytest.raises(TargetRefused, match="loopback"):
        await crawl(crawl_settings(tmp_path, crawl_allowed_hosts=""), site.url("/"))
    assert not site.hits  # refused before any request


async def test_fetcher_refuses_a_redirect_to_a_private_address(tmp_path: Path) -> None:
    routes = {"/hop": Route(b"", status=302, headers={"Location": "http://10.255.255.1/admin"})}
    with FixtureSite(routes) as site:
        async with Fetcher(crawl_settings(tmp_path)) as fetcher:
            with pytest.raises(TargetRefused, match="private"):
                await fetcher.get(site.url("/hop"))
    assert site.hits["/hop"] == 1


async def test_compressed_answers_are_capped_after_decompression(tmp_path: Path) -> None:
    bomb = Route("x" * 2_000_000, headers={"Content-Encoding": "gzip"}, gzip_body=True)
    with FixtureSite({"/bomb.html": bomb}) as site:
        async with Fetcher(crawl_settings(tmp_path)) as fetcher:
            with pytest.raises(SkippedPage, match="larger than 100000 bytes"):
                await fetcher.get(site.url("/bomb.html"))


async def test_requests_to_one_host_are_spaced_by_the_politeness_delay(tmp_path: Path) -> None:
    clock = SteppedClock()
    with FixtureSite({f"/{i}.html": page(str(i), "<p>x</p>") for i in range(4)}) as site:
        async with Fetcher(crawl_settings(tmp_path, crawl_per_host_delay_ms=150), clock=clock) as fetcher:
            await asyncio.gather(*(fetcher.get(site.url(f"/{i}.html")) for i in range(4)))
    assert clock.slept == pytest.approx([0.15, 0.15, 0.15])  # three gaps of 150 ms, despite concurrency 4
    assert sum(site.hits.values()) == 4


async def test_revalidations_wait_a_quarter_of_the_delay_and_crawl_delay_whole(tmp_path: Path) -> None:
    clock = SteppedClock()
    routes = {f"/{i}.html": Route("<p>x</p>", etag=f'"v{i}"') for i in range(4)}
    with FixtureSite(routes) as site:
        async with Fetcher(crawl_settings(tmp_path, crawl_per_host_delay_ms=200), clock=clock) as fetcher:
            answers = await asyncio.gather(
                *(
                    fetcher.get(site.url(f"/{i}.html"), conditions=lambda u: {"If-None-Match": f'"v{u[-6]}"'})
                    for i in range(4)
                )
            )
            assert all(answer.not_modified for answer in answers)
            assert clock.slept == pytest.approx([0.05, 0.05, 0.05])
            clock.slept.clear()
            fetcher.set_host_delay("127.0.0.1", 1.0)  # robots.txt Crawl-delay: 1
            await asyncio.gather(
                *(
                    fetcher.get(site.url(f"/{i}.html"), conditions=lambda u: {"If-None-Match": f'"v{u[-6]}"'})
                    for i in range(3)
                )
            )
    assert clock.slept == pytest.approx([0.05, 1.0, 1.0])  # the first only waits out the last revalidation's gap
