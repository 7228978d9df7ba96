"""The crawl itself: discovery, then a breadth-first crawl, yielding Documents as pages arrive.

`Crawler.documents()` is an async generator, so pages stream into ingestion: a bounded queue
between the fetch workers and the consumer keeps at most ~2 x CRAWL_CONCURRENCY pages in memory;
the only thing that grows with the site is the set of canonical URLs already claimed (which is
how each page is fetched and stored once). Closing the generator (a stop, or a failure
downstream) cancels the workers and closes the HTTP client.

What a start URL means (the issue's rules):
- a sitemap (`*sitemap*.xml[.gz]`, or any URL answering a <urlset>/<sitemapindex>): its pages;
- an `llms-full.txt`: one page per section; any other `.txt`/`.md`: that one page;
- an `llms.txt`: that page, then the pages it links, crawled like links of a page;
- anything else: the page and its links up to `max_depth` (start page = depth 0) within the
  request's scope and URL patterns (scope.py; they never filter the start URL), seeded with the
  site's llms.txt and sitemaps (from robots.txt, else /sitemap.xml) as if the start page linked
  them. At the site root, an llms-full.txt replaces the crawl: it is the site's own full text for
  language models.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urldefrag, urljoin, urlsplit

from ragserver.config import Settings
from ragserver.crawl import discover
from ragserver.crawl.browser import Renderer
from ragserver.crawl.fetch import Fetched, Fetcher, SkippedPage
from ragserver.crawl.markdown import Converter, prepare_crawl4ai
from ragserver.crawl.refresh import PreviousCrawl, RefreshCounts, content_hash
from ragserver.crawl.request import CrawlRequest
from ragserver.crawl.robots import Robots, load_robots
from ragserver.crawl.scope import Scope
from ragserver.crawl.urls import canonicalize, url_kind
from ragserver.domain import Document
from ragserver.errors import CrawlError, RagServerError, TargetRefused

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
META_CHARSET = re.compile(rb"<meta[^>]+charset=[\"']?([\w-]+)", re.IGNORECASE)
_DONE = object()


@dataclass
class CrawlStats:
    """Counters reported as progress; `found` counts URLs queued for fetching."""

    found: int = 0
    crawled: int = 0
    failed: int = 0
    skipped: int = 0
    link_dense: int = 0  # of the skipped: index and table-of-contents pages, followed but not stored
    robots_blocked: int = 0
    sitemap_urls: int = 0
    llms_files: int = 0
    errors: list[str] = field(default_factory=list)
    changes: RefreshCounts = field(default_factory=RefreshCounts)

    def counts(self) -> dict[str, int]:
        """The counters under the names progress snapshots use."""
        return {
            "pages_found": self.found,
            "pages_crawled": self.crawled,
            "pages_failed": self.failed,
            "pages_skipped": self.skipped,
            "pages_skipped_link_dense": self.link_dense,
            "robots_blocked": self.robots_blocked,
            **self.changes.counts(),
        }


ProgressCallback = Callable[[str, CrawlStats], None]


class Crawler:
    """One crawl run of `request`; create a new one per crawl.

    It reads the start URL, the depth, the page budget (CRAWL_MAX_PAGES when the request gives
    none), the scope, the include/exclude patterns and the request headers from the request.
    """

    def __init__(
        self,
        settings: Settings,
        request: CrawlRequest,
        on_progress: ProgressCallback | None = None,
        converter: Converter | None = None,
        previous: PreviousCrawl | None = None,
    ) -> None:
        self.settings = settings
        self.converter = converter or Converter(settings.data_dir, workers=1)
        self.request = request
        self.max_depth = request.max_depth
        self.max_pages = request.max_pages or settings.crawl_max_pages
        self.previous = previous or PreviousCrawl()  # a refresh: what the last crawl stored
        self.stats = CrawlStats(changes=self.previous.counts)
        self._notify = on_progress or (lambda step, stats: None)
        self._claimed: set[str] = set()
        self._frontier: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._out: asyncio.Queue[object] = asyncio.Queue(maxsize=max(2, 2 * settings.crawl_concurrency))
        self._budget = asyncio.Condition()
        self._reserved = 0
        self._in_flight = 0
        self._robots = Robots(settings.crawl_user_agent)
        self._renderer: Renderer | None = None
        prepare_crawl4ai(settings.data_dir)

    async def documents(self) -> AsyncGenerator[Document]:
        """Yield every page of the crawl as a Document (url is the canonical URL)."""
        start_url = self.request.url
        start = canonicalize(start_url)
        if start is None:
            raise TargetRefused(f"only http and https URLs can be crawled: {start_url!r}")
        fetch_start = urldefrag(start_url.strip())[0]
        self._start = start
        self.scope = Scope(
            fetch_start, self.request.include_patterns, self.request.exclude_patterns, self.request.scope
        )
        fetcher = Fetcher(self.settings, headers=self.request.headers, send_headers_to=self.scope.same_host)
        async with fetcher:
            self.fetcher = fetcher
            await fetcher.guard.check_url(fetch_start)
            if self.settings.browser_cdp_url:
                self._renderer = Renderer(
                    self.settings, fetcher.guard, headers=self.request.headers, send_headers_to=self.scope.same_host
                )
            try:
                async for doc in self._run(fetch_start, start):
                    self.previous.record(doc.url, carried=doc.carried_from is not None)
                    yield doc
                self.previous.finish()
                self._notify("crawling", self.stats)
            finally:
                if self._renderer is not None:
                    await self._renderer.close()

    async def _run(self, fetch_start: str, start: str) -> AsyncIterator[Document]:
        self._notify("discovery", self.stats)
        root = f"{urlsplit(start).scheme}://{urlsplit(start).netloc}"
        self._robots = await load_robots(self.fetcher, root, self.settings.crawl_user_agent)
        host = urlsplit(start).hostname or ""
        if self.settings.crawl_respect_robots and not self._robots.allows(fetch_start):
            raise TargetRefused(f"robots.txt of {host} disallows {fetch_start} (CRAWL_RESPECT_ROBOTS=false ignores it)")
        if self._robots.crawl_delay():
            self.fetcher.set_host_delay(host, self._robots.crawl_delay())
        kind = url_kind(start)
        if kind in ("llms-full", "text"):
            async for doc in self._single_text(fetch_start, split=kind == "llms-full"):
                yield doc
            return
        if kind == "sitemap":
            await self._seed_sitemaps([fetch_start], depth=self.max_depth)
        elif urlsplit(start).path == "/" and await self._llms_full_at(root):
            async for doc in self._single_text(root + "/llms-full.txt", split=True):
                yield doc
            return
        else:
            self._enqueue(fetch_start, 0, count_robots=False)
            if kind == "page":
                await self._discover(root)
        async for doc in self._crawl():
            yield doc
        if not self.stats.crawled:
            detail = "; ".join(self.stats.errors[:3]) or "every page was skipped"
            if self.stats.link_dense:
                detail += f" ({self.stats.link_dense} link-dense index pages; keep_link_pages stores them)"
            raise CrawlError(f"no page could be crawled from {start}: {detail}")

    async def _discover(self, root: str) -> None:
        """Seed the frontier with the site's llms.txt and sitemap pages (depth 1: linked from the start)."""
        llms = root + "/llms.txt"
        if self.scope.allows(llms) and await self._is_text_file(llms):  # out of scope: not even probed
            self._enqueue(llms, 1, count_robots=False)
        sitemaps = self._robots.sitemaps or [root + "/sitemap.xml"]
        await self._seed_sitemaps(sitemaps, depth=1)

    async def _seed_sitemaps(self, urls: list[str], *, depth: int) -> None:
        limit = self.max_pages * 2
        found = await discover.read_sitemaps(self.fetcher, urls, limit=limit, allowed=self.scope.same_site)
        self.stats.sitemap_urls += len(found.urls)
        for url in found.urls:
            self._enqueue(url, depth)
        self._notify("discovery", self.stats)

    async def _llms_full_at(self, root: str) -> bool:
        return await self._is_text_file(root + "/llms-full.txt")

    async def _is_text_file(self, url: str) -> bool:
        """True when `url` answers with plain text or markdown (a discovery probe; failures mean no)."""
        try:
            page = await self.fetcher.get(url, same_site=self.scope.same_site)
        except RagServerError:
            return False
        return page.content_type in ("text/plain", "text/markdown", "text/x-markdown")

    async def _single_text(self, url: str, *, split: bool) -> AsyncIterator[Document]:
        """A start URL that is one text file: one page, or one page per llms-full section."""
        self._notify("crawling", self.stats)
        page = await self.fetcher.get(url, same_site=self.scope.same_site)
        text = page.text()
        docs = (
            await asyncio.to_thread(lambda: list(discover.split_llms_full(canonicalize(page.final_url) or url, text)))
            if split
            else [self._text_document(page, text)]
        )
        for doc in docs:
            if self.stats.crawled >= self.max_pages:
                return
            self._compare(doc)
            self.stats.found += 1
            self.stats.crawled += 1
            self._notify("crawling", self.stats)
            yield doc

    def _enqueue(self, url: str, depth: int, *, count_robots: bool = True) -> None:
        """Queue a URL once (by canonical form) if the scope and robots.txt allow it."""
        canonical = canonicalize(url)
        if depth > self.max_depth or canonical is None or canonical in self._claimed:
            return
        if canonical != self._start and not self.scope.allows(canonical):  # patterns never filter the start URL
            return
        if self.settings.crawl_respect_robots and not self._robots.allows(url):
            if count_robots:
                self.stats.robots_blocked += 1
            return
        self._claimed.add(canonical)
        self.stats.found += 1
        self._frontier.put_nowait((urldefrag(url)[0], depth))

    async def _crawl(self) -> AsyncIterator[Document]:
        self._notify("crawling", self.stats)
        workers = [asyncio.create_task(self._worker()) for _ in range(max(1, self.settings.crawl_concurrency))]
        closer = asyncio.create_task(self._close_when_done())
        try:
            while True:
                item = await self._out.get()
                if item is _DONE:
                    break
                yield item  # type: ignore[misc]
        finally:
            for task in [*workers, closer]:
                task.cancel()
            await asyncio.gather(*workers, closer, return_exceptions=True)

    async def _close_when_done(self) -> None:
        await self._frontier.join()
        await self._out.put(_DONE)

    async def _worker(self) -> None:
        while True:
            url, depth = await self._frontier.get()
            try:
                await self._visit(url, depth)
            finally:
                self._frontier.task_done()

    async def _visit(self, url: str, depth: int) -> None:
        """Fetch one URL within the page budget; stores nothing itself, it hands Documents downstream."""
        async with self._budget:
            await self._budget.wait_for(lambda: self._reserved < self.max_pages or not self._in_flight)
            if self._reserved >= self.max_pages:
                return
            self._reserved += 1
            self._in_flight += 1
        stored = False
        try:
            doc = await self._page(url, depth)
            if doc is not None:
                await self._out.put(doc)
                stored = True
                self.stats.crawled += 1
        finally:
            async with self._budget:
                self._in_flight -= 1
                if not stored:
                    self._reserved -= 1
                self._budget.notify_all()
            self._notify("crawling", self.stats)

    async def _page(self, url: str, depth: int) -> Document | None:
        """Fetch and convert one page and queue its links; None for a page that is not stored."""
        try:
            page = await self.fetcher.get(url, same_site=self.scope.same_site, conditions=self._conditions)
            final = canonicalize(page.final_url)
            if final is None or (final != canonicalize(url) and not self._claim_redirect(final)):
                self.stats.skipped += 1
                return None
            doc, links = await self._document(page, final, depth)
        except SkippedPage as exc:
            self.stats.skipped += 1
            log.info("skipped %s: %s", url, exc.message)
            return None
        except RagServerError as exc:
            self._record_failure(url, exc.message)
            return None
        except Exception as exc:  # one odd page must not end the crawl
            log.exception("crawling %s failed", url)
            self._record_failure(url, f"{type(exc).__name__}: {exc}")
            return None
        if depth < self.max_depth:
            for link in links:
                self._enqueue(link, depth + 1)
        if doc.metadata.get("link_dense") and not self.request.keep_link_pages:
            self.stats.skipped += 1
            self.stats.link_dense += 1
            return None
        return doc if doc.carried_from is not None or doc.markdown.strip() else None

    def _conditions(self, url: str) -> dict[str, str]:
        """The conditional headers of a fetch of `url` (a page the previous crawl stored)."""
        return self.previous.conditions(canonicalize(url) or url)

    def _compare(self, doc: Document) -> None:
        """Stamp a fetched document with its content hash; carried when the previous crawl stored the same."""
        doc.content_hash = content_hash(doc.title, doc.markdown)
        doc.carried_from = self.previous.unchanged(doc.url, doc.title, doc.markdown)

    def _claim_redirect(self, final: str) -> bool:
        """A redirect target is stored only if no other URL already claimed it (and it is in scope)."""
        if final in self._claimed or not self.scope.allows(final):
            return False
        self._claimed.add(final)
        return True

    def _record_failure(self, url: str, message: str) -> None:
        self.stats.failed += 1
        if len(self.stats.errors) < 20:
            self.stats.errors.append(f"{url}: {message}")
        log.info("failed %s: %s", url, message)

    async def _document(self, page: Fetched, url: str, depth: int) -> tuple[Document, list[str]]:
        """The page as a Document (stamped for a refresh) and the links to follow from it."""
        if page.not_modified:
            return await self._not_modified(page, url)
        doc, links = await self._converted(page, url, depth)
        doc.etag, doc.last_modified, doc.links = page.etag, page.last_modified, links
        self._compare(doc)
        return doc, links

    async def _not_modified(self, page: Fetched, url: str) -> tuple[Document, list[str]]:
        """A 304: the stored page is carried, and its stored links are followed."""
        stored = self.previous.page(url)
        if stored is None:  # validators of another URL's page (a redirect): nothing stored to carry here
            raise SkippedPage(f"{url} answered 304 to a request that was not conditional")
        etag = page.etag or stored["etag"]
        last_modified = page.last_modified or stored["last_modified"]
        doc = Document(url, "", "", etag=etag, last_modified=last_modified, carried_from=stored["page_id"])
        return doc, await self.previous.links(url)

    async def _converted(self, page: Fetched, url: str, depth: int) -> tuple[Document, list[str]]:
        if page.content_type in HTML_TYPES:
            if self._renderer is not None:
                html = await self._renderer.render(page.final_url)
            else:
                html = page.body.decode(_html_charset(page), errors="replace")
            converted = await self.converter.convert(page.final_url, html, self.request.content_rules())
            meta = {
                "content_type": page.content_type,
                "fetched_url": page.final_url,
                "link_share": round(converted.link_share, 3),
                "link_dense": converted.link_dense,
            }
            title = converted.title or discover.markdown_title(converted.markdown, url)
            return Document(url, title, converted.markdown, meta), converted.links
        if page.content_type.endswith(("xml", "gzip")):
            if depth == 0:  # a start URL that answers with a sitemap is read as one
                await self._seed_sitemaps([page.final_url], depth=self.max_depth)
            raise SkippedPage(f"{url} is {page.content_type}, not a page")
        text = page.text()
        links = [urljoin(page.final_url, link) for link in await asyncio.to_thread(discover.markdown_links, text)]
        if url_kind(url) == "llms":
            self.stats.llms_files += 1
        return self._text_document(page, text), links

    @staticmethod
    def _text_document(page: Fetched, text: str) -> Document:
        url = canonicalize(page.final_url) or page.final_url
        title = discover.markdown_title(text, urlsplit(url).path.rsplit("/", 1)[-1] or url)
        return Document(url, title, text.strip(), {"content_type": page.content_type, "fetched_url": page.final_url})


def _html_charset(page: Fetched) -> str:
    """Charset from the header, else from a <meta charset> near the top, else UTF-8."""
    match = META_CHARSET.search(page.body[:4096])
    name = page.charset or (match.group(1).decode("ascii") if match else "utf-8")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"
