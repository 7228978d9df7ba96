"""CrawlService: start a crawl or a refresh as a tracked operation, stream its pages into ingestion.

The crawler yields Documents; `IngestService.ingest_documents` chunks, embeds and writes them in
bounded batches inside one ingest run (begin_run ... commit_run), so a crawl that fails or is
stopped leaves the source's previous content in place and never duplicates it. A source's id is
derived from the canonical start URL: crawling the same URL again is a refresh of that source.
The crawl options are kept in the source's metadata so a refresh repeats the same crawl.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ragserver.config import Settings
from ragserver.crawl.crawler import Crawler, CrawlOptions, CrawlStats
from ragserver.crawl.guard import Guard
from ragserver.crawl.markdown import Converter
from ragserver.crawl.urls import canonicalize
from ragserver.domain import Document, SourceInfo
from ragserver.errors import Busy, InputError, RagServerError
from ragserver.progress import ACTIVE, Operation, OperationCancelled, ProgressTracker

log = logging.getLogger(__name__)

MAX_DEPTH_LIMIT = 10
MAX_PAGES_LIMIT = 100_000
CANCEL_POLL_S = 0.2
# Share of the progress bar for discovery; crawling/storing fills the rest.
DISCOVERY_SHARE = 5.0


@dataclass
class CrawlRequest:
    """A crawl as the API and the CLI describe it (Archon v1 field names)."""

    url: str
    knowledge_type: str = "technical"
    tags: list[str] = field(default_factory=list)
    max_depth: int = 2
    max_pages: int | None = None
    include_patterns: list[str] = field(default_factory=list)
    exclude_patterns: list[str] = field(default_factory=list)
    extract_code_examples: bool = True


def source_id_for(url: str) -> str:
    """The stable source id of a crawl start URL (same canonical URL, same source)."""
    canonical = canonicalize(url) or url
    host = urlsplit(canonical).hostname or "site"
    return f"{host}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


class CrawlService:
    """Runs crawls in the background (API) or in the foreground (CLI), one Operation each."""

    def __init__(self, store: Any, ingest_service: Any, settings: Settings, progress: ProgressTracker) -> None:
        self.store = store
        self.ingest = ingest_service
        self.settings = settings
        self.progress = progress
        self.guard = Guard(settings)
        self.converter = Converter(settings.data_dir, settings.crawl_convert_workers, settings.bulk_nice)
        self._tasks: set[asyncio.Task] = set()
        self._running: dict[str, Operation] = {}  # source_id -> the crawl now writing it

    async def start_crawl(self, request: CrawlRequest) -> Operation:
        """Validate the request (bad input and refused targets raise 4xx here), then crawl in the background."""
        request = await self._validated(request)
        op = self._start_operation(request)
        task = asyncio.create_task(self._run_quietly(request, op), name=f"crawl-{op.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return op

    async def start_refresh(self, source_id: str) -> Operation:
        """Re-crawl a source with the options of its last crawl; its pages are replaced atomically."""
        source = await self.store.get_source(source_id)
        options = (source.get("metadata") or {}).get("crawl")
        if not options:
            raise InputError(f"source {source_id!r} was not crawled from a URL, so it cannot be refreshed")
        request = CrawlRequest(
            url=options.get("url") or source["origin"],
            knowledge_type=source.get("knowledge_type") or "technical",
            tags=list(source.get("tags") or []),
            max_depth=options.get("max_depth", 2),
            max_pages=options.get("max_pages"),
            include_patterns=options.get("include_patterns", []),
            exclude_patterns=options.get("exclude_patterns", []),
            extract_code_examples=options.get("extract_code_examples", True),
        )
        return await self.start_crawl(request)

    async def crawl(
        self,
        url: str,
        max_depth: int | None = None,
        max_pages: int | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Crawl in the foreground (the CLI): returns the result, raises when the crawl fails."""
        request = CrawlRequest(url=url, max_pages=max_pages)
        if max_depth is not None:
            request.max_depth = max_depth
        request = await self._validated(request)
        op = self._start_operation(request)
        try:
            return await self._run(request, op, on_progress)
        finally:
            if on_progress is not None:
                on_progress(op.snapshot())  # the final state (100 % or the error) for the progress bar

    async def stop_all(self) -> None:
        """Wait for background crawls to end (their operations were cancelled by the tracker)."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.converter.close()

    def _start_operation(self, request: CrawlRequest) -> Operation:
        """A new crawl operation, unless that source is being crawled right now (two runs would race)."""
        source_id = source_id_for(request.url)
        current = self._running.get(source_id)
        if current is not None and current.status in ACTIVE:
            raise Busy(
                f"{request.url} is already being crawled; stop that crawl or wait for it",
                details={"progressId": current.id, "source_id": source_id},
            )
        op = self.progress.start("crawl", message=f"crawling {request.url}")
        self._running[source_id] = op
        return op

    async def _validated(self, request: CrawlRequest) -> CrawlRequest:
        url = (request.url or "").strip()
        if not url:
            raise InputError("url is required")
        if not 0 <= request.max_depth <= MAX_DEPTH_LIMIT:
            raise InputError(f"max_depth must be between 0 and {MAX_DEPTH_LIMIT}")
        max_pages = request.max_pages or self.settings.crawl_max_pages
        if not 1 <= max_pages <= MAX_PAGES_LIMIT:
            raise InputError(f"max_pages must be between 1 and {MAX_PAGES_LIMIT}")
        await self.guard.check_url(url)
        request.url, request.max_pages = url, max_pages
        return request

    async def _run_quietly(self, request: CrawlRequest, op: Operation) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._run(request, op)

    async def _run(
        self,
        request: CrawlRequest,
        op: Operation,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Crawl and ingest; the operation ends completed, failed or cancelled (the error is re-raised)."""
        crawler = Crawler(
            self.settings,
            CrawlOptions(
                max_depth=request.max_depth,
                max_pages=request.max_pages or self.settings.crawl_max_pages,
                include_patterns=request.include_patterns,
                exclude_patterns=request.exclude_patterns,
            ),
            on_progress=_reporter(op, request, on_progress),
            converter=self.converter,
        )
        source = _source_info(request)
        ingest = asyncio.create_task(
            self.ingest.ingest_documents(source, _checked(crawler, request.url, op), op, kind="crawl")
        )
        watcher = asyncio.create_task(_cancel_when_asked(op, ingest))
        try:
            counts = await ingest
        except (OperationCancelled, asyncio.CancelledError):
            op.mark_cancelled(f"crawl of {request.url} stopped; previous content kept")
            raise
        except RagServerError as exc:
            op.fail(exc.message)
            raise
        except Exception as exc:
            log.exception("crawl of %s failed", request.url)
            op.fail(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            watcher.cancel()
            if not ingest.done():  # this task itself was cancelled (shutdown): stop the ingest too
                ingest.cancel()
                await asyncio.gather(ingest, return_exceptions=True)
            if self._running.get(source.source_id) is op:
                del self._running[source.source_id]
        result = {
            "source_id": source.source_id,
            "url": request.url,
            **(counts or {}),
            **crawler.stats.counts(),
            "errors": crawler.stats.errors,
        }
        op.finish(f"crawled {crawler.stats.crawled} pages from {request.url}", result=result)
        return result


def _source_info(request: CrawlRequest) -> SourceInfo:
    parts = urlsplit(canonicalize(request.url) or request.url)
    title = (parts.netloc + parts.path).rstrip("/") or request.url
    options = asdict(request)
    options.pop("knowledge_type")
    options.pop("tags")
    return SourceInfo(
        source_id=source_id_for(request.url),
        title=title,
        origin=request.url,
        knowledge_type=request.knowledge_type,
        tags=list(request.tags),
        metadata={"crawl": options, "extract_code_examples": request.extract_code_examples},
    )


async def _checked(crawler: Crawler, url: str, op: Operation) -> AsyncIterator[Document]:
    """The crawler's pages, stopping at the first page after a stop request."""
    docs = crawler.documents(url)
    try:
        async for doc in docs:
            op.raise_if_cancelled()
            yield doc
    finally:
        await docs.aclose()


async def _cancel_when_asked(op: Operation, task: asyncio.Task) -> None:
    """Cancel the ingest task once the operation is cancelled, even while no page is arriving."""
    while not task.done():
        if op.cancelled:
            task.cancel()
            return
        await asyncio.sleep(CANCEL_POLL_S)


def _reporter(
    op: Operation, request: CrawlRequest, on_progress: Callable[[dict[str, Any]], None] | None
) -> Callable[[str, CrawlStats], None]:
    budget = request.max_pages or 1

    def report(step: str, stats: CrawlStats) -> None:
        if step == "discovery":
            progress = DISCOVERY_SHARE / 2
        else:
            expected = max(1, min(stats.found, budget))
            done = stats.crawled + stats.failed + stats.skipped
            progress = DISCOVERY_SHARE + (100 - 2 * DISCOVERY_SHARE) * min(1.0, done / expected)
        op.update(step=step, progress=progress, counts=stats.counts())
        if on_progress is not None:
            on_progress(op.snapshot())

    return report
