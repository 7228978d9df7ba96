"""A documentation site served over real HTTP on 127.0.0.1, for the crawler tests (crawl room).

`FixtureSite` is a tiny threaded HTTP server whose answers are a dict of routes; it records
every request, so tests can check that a page was fetched once and that robots.txt kept the
crawler out. `docs_site()` builds the standard site of the crawl tests: nested pages, a sitemap
index with a .gz sitemap, robots.txt, llms.txt, redirect chain and loop, 404/500/429, a binary
download, an oversized and a slow page, and duplicate links (fragment, query order, index.html).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from ragserver.config import Settings
from ragserver.crawl.crawler import Crawler
from ragserver.crawl.request import CrawlRequest
from ragserver.domain import Document

HTML = "text/html; charset=utf-8"
BIG_PAGE_BYTES = 300_000
SLOW_PAGE_S = 6.0
SHUTDOWN_POLL_S = 0.05


@dataclass
class Route:
    """One answer of the site; `fail_first` answers `fail_status` that many times before succeeding.

    With `etag` / `last_modified` the answer carries those validators, and a request that sends
    them back (If-None-Match / If-Modified-Since) gets 304 Not Modified. `hold`: the answer waits
    until the event is set (a page still on its way while a test looks at the store).
    """

    body: bytes | str = b""
    status: int = 200
    content_type: str = HTML
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    fail_first: int = 0
    fail_status: int = 503
    gzip_body: bool = False
    etag: str | None = None
    last_modified: str | None = None
    hold: threading.Event | None = None


def page(title: str, body: str, links: list[str] | tuple[str, ...] = ()) -> Route:
    """An HTML page with a title, some text and links."""
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{body}<ul>{anchors}</ul></body></html>"
    return Route(html)


def redirect(target: str, status: int = 302) -> Route:
    return Route(b"", status=status, headers={"Location": target})


def crawl_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for crawling the fixture site: 127.0.0.1 allowlisted, small budgets so limits show."""
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "crawl_allowed_hosts": "127.0.0.1",
        "crawl_per_host_delay_ms": 0,
        "crawl_timeout_s": 2,
        "crawl_max_page_bytes": 100_000,
        "crawl_max_retries": 1,
        "crawl_concurrency": 4,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def crawl(settings: Settings, url: str, **options: object) -> tuple[list[Document], Crawler]:
    """Run one crawl to the end: the Documents it yielded and the crawler (for its stats)."""
    crawler = Crawler(settings, CrawlRequest.checked(url=url, **options))
    return [doc async for doc in crawler.documents()], crawler


class FixtureSite:
    """HTTP server on a loopback address (free port) answering from `routes`; `{base}` in bodies is its URL."""

    def __init__(self, routes: dict[str, Route], host: str = "127.0.0.1") -> None:
        self.routes = dict(routes)
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, request headers) of every request, in order
        self.not_modified: Counter[str] = Counter()  # 304s answered, per path
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self.base = f"http://{host}:{self._server.server_address[1]}"
        # shutdown() waits for the serve loop's next poll: a short interval keeps each test's exit short
        self._thread = threading.Thread(target=self._server.serve_forever, args=(SHUTDOWN_POLL_S,), daemon=True)

    def __enter__(self) -> FixtureSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return self.base + path

    def set(self, path: str, route: Route) -> None:
        """Replace one answer (a site that changes between two crawls)."""
        with self._lock:
            self.routes[path] = route

    def _answer(self, raw_path: str) -> Route:
        with self._lock:
            self.hits[raw_path] += 1
            route = self.routes.get(raw_path) or self.routes.get(urlsplit(raw_path).path)
            if route is None:
                return Route("<h1>not found</h1>", status=404)
            if route.fail_first > 0 and self.hits[raw_path] <= route.fail_first:
                return Route("busy", status=route.fail_status, headers={"Retry-After": "0"})
            return route

    @staticmethod
    def _unchanged(route: Route, if_none_match: str | None, if_modified_since: str | None) -> bool:
        """Whether a conditional request's validators match the route's (If-None-Match decides when sent)."""
        if route.status != 200:
            return False
        if if_none_match is not None:
            return route.etag is not None and if_none_match == route.etag
        return if_modified_since is not None and if_modified_since == route.last_modified

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with site._lock:
                    site.requests.append((self.path, dict(self.headers.items())))
                route = site._answer(self.path)
                if route.hold is not None:
                    route.hold.wait()
                if route.delay_s:
                    time.sleep(route.delay_s)
                if site._unchanged(route, self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")):
                    site.not_modified[self.path] += 1
                    route = Route(b"", status=304, etag=route.etag, last_modified=route.last_modified)
                body = route.body.replace("{base}", site.base) if isinstance(route.body, str) else route.body
                data = body.encode() if isinstance(body, str) else body
                if route.gzip_body:
                    data = gzip.compress(data)
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in route.headers.items():
                        self.send_header(key, value.replace("{base}", site.base))
                    if route.etag:
                        self.send_header("ETag", route.etag)
                    if route.last_modified:
                        self.send_header("Last-Modified", route.last_modified)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the crawler gave up on this answer (timeout, size cap)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _urlset(paths: list[str]) -> str:
    locs = "".join(f"<url><loc>{{base}}{p}</loc></url>" for p in paths)
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'


# Every page of docs_site() a crawl from "/" with max_depth=2 must store, once each (canonical paths).
REACHABLE_PATHS = [
    "/",
    "/docs/intro.html",
    "/docs/deep/level2.html",
    "/docs/guide",
    "/docs/api.html?a=1&b=2",
    "/docs/redirected.html",
    "/busy.html",
    "/only-in-sitemap.html",
    "/from-gz-sitemap.html",
    "/llms.txt",
    "/llms-linked.html",
]


def docs_site() -> FixtureSite:
    """The standard crawl-test site (see the module docstring); use it as a context manager."""
    code = "<pre><code>def hello(name):\n    return f'hello {name}'\n\nprint(hello('crawler'))</code></pre>"
    routes = {
        "/": page(
            "Fixture Docs",
            "<p>Welcome to the fixture documentation.</p>",
            [
                "docs/intro.html",
                "docs/intro.html#install",
                "docs/intro.html?utm_source=newsletter",
                "docs/guide/",
                "docs/guide/index.html",
                "docs/api.html?b=2&a=1",
                "docs/api.html?a=1&b=2",
                "private/secret.html",
                "missing.html",
                "broken.html",
                "busy.html",
                "old-page",
                "loop-a",
                "files/manual.pdf",
                "download",
                "big.html",
                "slow.html",
                "to-metadata",
                "https://example.org/elsewhere",
                "mailto:docs@example.org",
            ],
        ),
        "/docs/intro.html": page(
            "Introduction", f"<p>The hello function greets.</p>{code}", ["deep/level2.html", "../index.html"]
        ),
        "/docs/deep/level2.html": page("Level two", "<p>Second level of nesting.</p>", ["level3.html"]),
        "/docs/deep/level3.html": page("Level three", "<p>Too deep for max_depth 2.</p>"),
        "/docs/guide/": page("Guide", "<p>The guide index page.</p>"),
        "/docs/guide/index.html": page("Guide", "<p>The guide index page.</p>"),
        "/docs/api.html": page("API reference", "<p>Query parameters in any order name one page.</p>"),
        "/private/secret.html": page("Secret", "<p>robots.txt forbids this.</p>"),
        "/private/hidden.html": page("Hidden", "<p>robots.txt forbids this too.</p>"),
        "/broken.html": Route("<h1>server error</h1>", status=500),
        "/busy.html": Route(page("Busy", "<p>Answered after one 429.</p>").body, fail_first=1, fail_status=429),
        "/old-page": redirect("/older-page", 301),
        "/older-page": redirect("{base}/docs/redirected.html"),
        "/docs/redirected.html": page("Redirected", "<p>The end of the redirect chain.</p>"),
        "/loop-a": redirect("/loop-b"),
        "/loop-b": redirect("/loop-a"),
        "/files/manual.pdf": Route(b"%PDF-1.4 not really", content_type="application/pdf"),
        "/download": Route(bytes(range(256)) * 8, content_type="application/octet-stream"),
        "/big.html": Route("<html><body>" + "x" * BIG_PAGE_BYTES + "</body></html>"),
        "/slow.html": Route(page("Slow", "<p>Too slow.</p>").body, delay_s=SLOW_PAGE_S),
        "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
        "/robots.txt": Route(
            "User-agent: *\nDisallow: /private/\nSitemap: {base}/sitemap_index.xml\n", content_type="text/plain"
        ),
        "/sitemap_index.xml": Route(
            '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            "<sitemap><loc>{base}/sitemap-pages.xml</loc></sitemap>"
            "<sitemap><loc>{base}/sitemap-extra.xml.gz</loc></sitemap></sitemapindex>",
            content_type="application/xml",
        ),
        "/sitemap-pages.xml": Route(
            _urlset(["/docs/intro.html", "/only-in-sitemap.html", "/private/hidden.html"]),
            content_type="application/xml",
        ),
        "/sitemap-extra.xml.gz": Route(
            _urlset(["/from-gz-sitemap.html"]), content_type="application/gzip", gzip_body=True
        ),
        "/only-in-sitemap.html": page("Only in the sitemap", "<p>No page links here.</p>"),
        "/from-gz-sitemap.html": page("From the gz sitemap", "<p>Listed in a gzipped sitemap.</p>"),
        "/llms.txt": Route(
            "# Fixture Docs\n\n> Docs for tests.\n\n- [Linked from llms](/llms-linked.html): a page\n",
            content_type="text/plain; charset=utf-8",
        ),
        "/llms-linked.html": page("Linked from llms.txt", "<p>Only llms.txt links here.</p>"),
        "/docs/llms-full.txt": Route(
            "# First section\nSource: {base}/docs/first\n\nAlpha text.\n\n```\n# not a heading\n```\n\n"
            "# Second section\n\nBeta text.\n",
            content_type="text/plain",
        ),
    }
    return FixtureSite(routes)
