"""Optional browser rendering for JavaScript sites, through crawl4ai's CDP mode (BROWSER_CDP_URL).

The page is first fetched by the guarded Fetcher (so its redirect hops, type and size are checked
like any page); only then does the browser render the final URL. Inside the browser every request
(the document, scripts, images, XHR) passes the same SSRF guard through a Playwright route, and
the URL the browser ends on is checked again. crawl4ai and playwright load only when this mode is
used: the slim image needs no Chromium.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from ragserver.config import Settings
from ragserver.crawl.guard import Guard
from ragserver.crawl.markdown import prepare_crawl4ai
from ragserver.errors import CrawlError, TargetRefused


class Renderer:
    """One connection to a CDP browser for the length of a crawl."""

    def __init__(
        self,
        settings: Settings,
        guard: Guard,
        *,
        headers: Mapping[str, str] | None = None,
        send_headers_to: Callable[[str], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._guard = guard
        self._headers = dict(headers or {})  # the crawl's own headers, for its hosts only (as the Fetcher)
        self._send_headers_to = send_headers_to or (lambda url: False)
        self._crawler: Any = None
        self._run_config: Any = None
        self._lock = asyncio.Lock()

    async def render(self, url: str) -> str:
        """The HTML of `url` after the browser ran its scripts."""
        crawler = await self._started()
        result = await crawler.arun(url, config=self._run_config)
        # crawl4ai marks short pages "blocked by anti-bot protection" by a size heuristic while still
        # returning their HTML; a 2xx answer with HTML is a rendered page for us.
        rendered = bool(result.html) and (result.status_code or 200) < 400
        if not result.success and not rendered:
            raise CrawlError(f"browser could not render {url}: {result.error_message}")
        await self._guard.check_url(result.redirected_url or url)
        return result.html or ""

    async def close(self) -> None:
        """Disconnect from the browser (the browser itself keeps running)."""
        if self._crawler is not None:
            await self._crawler.close()
            self._crawler = None

    async def _started(self) -> Any:
        async with self._lock:
            if self._crawler is None:
                prepare_crawl4ai(self._settings.data_dir)
                from crawl4ai import AsyncWebCrawler, BrowserConfig, CacheMode, CrawlerRunConfig

                browser = BrowserConfig(
                    browser_mode="custom", cdp_url=self._settings.browser_cdp_url, headless=True, verbose=False
                )
                crawler = AsyncWebCrawler(config=browser)
                crawler.crawler_strategy.set_hook("on_page_context_created", self._guard_page)
                try:
                    await crawler.start()
                except Exception as exc:
                    raise CrawlError(f"cannot connect to the browser at BROWSER_CDP_URL: {exc}") from exc
                self._run_config = CrawlerRunConfig(
                    cache_mode=CacheMode.BYPASS, page_timeout=self._settings.crawl_timeout_s * 1000, verbose=False
                )
                self._crawler = crawler
            return self._crawler

    async def _guard_page(self, page: Any, **_: Any) -> Any:
        """Route every browser request of this page through the SSRF guard."""

        async def check(route: Any) -> None:
            request_url = route.request.url
            if request_url.startswith(("http:", "https:")):
                try:
                    await self._guard.check_url(request_url)
                except TargetRefused:
                    await route.abort("blockedbyclient")
                    return
                if self._headers and self._send_headers_to(request_url):
                    await route.continue_(headers={**route.request.headers, **self._headers})
                    return
            await route.continue_()

        await page.route("**/*", check)
        return page
