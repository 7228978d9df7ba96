"""HTTP fetching with budgets: guarded hops, timeouts, retries, politeness and a size cap.

Why not crawl4ai's AsyncHTTPCrawlerStrategy for the bytes (crawl4ai 0.9.5 read, not guessed):
its `_handle_http` reads the whole body with `response.read()` (no size cap, so one huge page
can exhaust memory), writes every non-HTML response to ~/.crawl4ai/downloads, and with
`follow_redirects=False` raises `HTTPStatusError` without the Location header, while with
`follow_redirects=True` aiohttp follows the hops where no guard sees them. So the bytes are fetched
here with aiohttp (the same client crawl4ai uses) hop by hop: every hop passes the SSRF guard
(before the request and again in the connector's resolver) and the site check; bodies stream
under CRAWL_MAX_PAGE_BYTES (counted after decompression); non-text types are skipped unread.
crawl4ai still turns the HTML into markdown (see `markdown.py`), and renders pages in browser mode.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from ragserver.clock import Clock, LoopClock
from ragserver.config import Settings
from ragserver.crawl.guard import Guard, GuardedResolver, RefusedAddress
from ragserver.errors import CrawlError, TargetRefused
from ragserver.logredact import mask_in_logs

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
READ_CHUNK = 64 * 1024
REVALIDATION_DELAY_SHARE = 0.25  # of CRAWL_PER_HOST_DELAY_MS before a conditional request (see _polite)
TEXT_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "text/plain",
        "text/markdown",
        "text/x-markdown",
        "text/xml",
        "application/xml",
        "application/x-gzip",
        "application/gzip",
    }
)


class SkippedPage(CrawlError):
    """A page the crawler deliberately does not store (binary, too large, off-site redirect)."""

    status_code = 422
    code = "page_skipped"


@dataclass
class Fetched:
    """One successful response: where it ended up and its (capped) body."""

    url: str
    final_url: str
    status: int
    content_type: str
    body: bytes
    charset: str | None = None
    #: the answer's validators, sent back by a refresh to ask whether the page changed
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        """The answer to a conditional request: the page is as the validators sent describe it."""
        return self.status == 304

    def text(self) -> str:
        """The body decoded with the declared charset, else UTF-8 (bad bytes replaced)."""
        return self.body.decode(self.charset or "utf-8", errors="replace")


class Fetcher:
    """One HTTP client for a crawl: concurrency limit, per-host delay, guarded redirects, retries.

    `headers` (a crawl's own, e.g. a token for private docs) go with every request to a URL that
    `send_headers_to` accepts (the crawl's hosts), never to another host a redirect or a
    sitemap names; their values are masked in the logs from the moment the fetcher has them.
    """

    def __init__(
        self,
        settings: Settings,
        guard: Guard | None = None,
        clock: Clock | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        send_headers_to: Callable[[str], bool] | None = None,
    ) -> None:
        self.settings = settings
        self._headers = dict(headers or {})
        self._send_headers_to = send_headers_to or (lambda url: False)
        mask_in_logs(self._headers.values())
        self.guard = guard or Guard(settings)
        self.clock: Clock = clock or LoopClock()  # paces retries and the per-host delay
        self.max_bytes = settings.crawl_max_page_bytes
        self.retries = settings.crawl_max_retries
        self.delay_s = settings.crawl_per_host_delay_ms / 1000
        self._slots = asyncio.Semaphore(max(1, settings.crawl_concurrency))
        self._host_locks: dict[str, asyncio.Lock] = {}
        self._host_next: dict[str, float] = {}
        self._host_delay: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.guard),
            limit=max(1, self.settings.crawl_concurrency),
            limit_per_host=max(1, self.settings.crawl_concurrency),
            ttl_dns_cache=60,
        )
        timeout = aiohttp.ClientTimeout(
            total=self.settings.crawl_timeout_s,
            connect=min(10, self.settings.crawl_timeout_s),
            sock_read=self.settings.crawl_timeout_s,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": self.settings.crawl_user_agent, "Accept": "text/html,*/*;q=0.8"},
            trust_env=False,
            auto_decompress=True,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def set_host_delay(self, host: str, seconds: float) -> None:
        """Raise the politeness delay for one host (robots.txt Crawl-delay)."""
        self._host_delay[host] = max(self.delay_s, seconds)

    async def get(
        self,
        url: str,
        *,
        same_site: Callable[[str], bool] | None = None,
        conditions: Callable[[str], Mapping[str, str]] | None = None,
    ) -> Fetched:
        """Fetch `url`, following redirects that stay on the site (each hop guarded).

        `conditions` gives the If-None-Match / If-Modified-Since headers of a hop's URL (a
        refresh); a 304 answer is returned as a Fetched without a body (`not_modified`).

        Raises TargetRefused (guard), SkippedPage (binary, too large, off-site or looping
        redirect) or CrawlError (HTTP error after retries, timeout, connection failure).
        """
        seen = {url}
        current = url
        await self.guard.check_url(current)
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, body = await self._request_with_retries(current, conditions(current) if conditions else {})
            if status == 304:
                return Fetched(url, current, status, "", b"", None, headers.get("ETag"), headers.get("Last-Modified"))
            if 300 <= status < 400 and "Location" in headers:
                target = urljoin(current, headers["Location"])
                await self.guard.check_url(target)
                if same_site is not None and not same_site(target):
                    raise SkippedPage(f"{url} redirects off the site to {target}")
                if target in seen:
                    raise SkippedPage(f"redirect loop at {target}")
                seen.add(target)
                current = target
                continue
            if status >= 400:
                raise CrawlError(f"HTTP {status} for {current}", details={"status": status})
            ctype = headers.get("Content-Type", "")
            mime = ctype.split(";")[0].strip().lower() or "text/html"
            validators = headers.get("ETag"), headers.get("Last-Modified")
            return Fetched(url, current, status, mime, body or b"", _charset(ctype), *validators)
        raise SkippedPage(f"more than {MAX_REDIRECTS} redirects from {url}")

    async def _request_with_retries(
        self, url: str, conditions: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes | None]:
        attempt = 0
        while True:
            try:
                status, headers, body = await self._request(url, conditions)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if attempt >= self.retries:
                    raise CrawlError(f"{url}: {_describe(exc)}") from exc
                wait = _backoff(attempt)
            except aiohttp.ClientError as exc:
                raise CrawlError(f"{url}: {_describe(exc)}") from exc
            else:
                if status not in RETRY_STATUSES or attempt >= self.retries:
                    return status, headers, body
                wait = _retry_after(headers.get("Retry-After")) or _backoff(attempt)
            attempt += 1
            log.debug("retrying %s in %.1fs (attempt %d)", url, wait, attempt)
            await self.clock.sleep(wait)

    async def _request(self, url: str, conditions: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes | None]:
        """One GET without redirects; the body is read only for a final, textual, small enough answer."""
        assert self._session is not None, "use `async with Fetcher(...)`"
        async with self._slots:
            await self._polite(url, revalidation=bool(conditions))
            try:
                extra = dict(self._headers) if self._headers and self._send_headers_to(url) else {}
                extra.update(conditions)
                async with self._session.get(url, allow_redirects=False, headers=extra or None) as resp:
                    headers = resp.headers  # case-insensitive: servers spell ETag, Etag, etag
                    if resp.status >= 300:
                        return resp.status, headers, None
                    mime = resp.content_type.lower()
                    if mime not in TEXT_TYPES and not mime.startswith("text/"):
                        raise SkippedPage(f"{url} is {mime}, not a page")
                    if (resp.content_length or 0) > self.max_bytes:
                        raise SkippedPage(f"{url} is larger than {self.max_bytes} bytes")
                    return resp.status, headers, await self._read_capped(url, resp)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, RefusedAddress):
                    raise TargetRefused(str(exc.os_error)) from exc
                raise

    async def _read_capped(self, url: str, resp: aiohttp.ClientResponse) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise SkippedPage(f"{url} is larger than {self.max_bytes} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def _polite(self, url: str, *, revalidation: bool = False) -> None:
        """Space requests to the same host by the per-host delay (robots Crawl-delay when larger).

        A revalidation (a conditional request of a refresh) waits REVALIDATION_DELAY_SHARE of our
        own delay: the delay spares the site's work per request, and the answer to one is mostly a
        304, a header lookup with no body; at the full delay a refresh of an unchanged site would
        take its page count times the delay. A robots.txt Crawl-delay is the site's rule and
        applies whole.
        """
        host = urlsplit(url).hostname or ""
        own = self.delay_s * (REVALIDATION_DELAY_SHARE if revalidation else 1.0)
        delay = self._host_delay.get(host, own)
        if delay <= 0:
            return
        lock = self._host_locks.setdefault(host, asyncio.Lock())
        async with lock:
            wait = self._host_next.get(host, 0.0) - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
            self._host_next[host] = self.clock.now() + delay


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip("\"'")
    return None


def _backoff(attempt: int) -> float:
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0**attempt) * (0.75 + random.random() / 2)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta or HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(BACKOFF_MAX_S, seconds))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
