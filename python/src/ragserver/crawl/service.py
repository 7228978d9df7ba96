"""CrawlService: start a crawl or a refresh as a tracked operation, stream its pages into ingestion.

The crawler yields Documents; `IngestService.ingest_documents` chunks, embeds and writes them in
bounded batches inside one ingest run (begin_run ... commit_run), so a crawl that fails or is
stopped leaves the source's previous content in place and never duplicates it. The first crawl of
a source runs progressive: its pages are searchable as they are written, and stopped early it
keeps them (partial) until a refresh replaces them. A refresh is incremental (crawl/refresh.py):
pages unchanged since the previous crawl are carried over with their chunks and vectors. A source's id is
derived from the canonical start URL: crawling the same URL again is a refresh of that source.
The crawl options are kept in the source's metadata so a refresh repeats the same crawl. The
tracker's runner ends each crawl's operation and cancels it the moment a stop is asked for.
Given a ReplicaWorker (the server), a crawl is a job queued in the database that one replica
claims (ragserver.replicas says which); without one (the CLI, tests of this service) it runs here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ragserver.config import Settings
from ragserver.crawl.crawler import Crawler, CrawlStats
from ragserver.crawl.guard import Guard
from ragserver.crawl.markdown import Converter
from ragserver.crawl.ports import CrawlStore, DocumentSink
from ragserver.crawl.refresh import PreviousCrawl
from ragserver.crawl.request import MAX_PAGES_LIMIT, CrawlRequest
from ragserver.crawl.urls import canonicalize
from ragserver.domain import SourceInfo, source_labels
from ragserver.errors import Busy, InputError, NotFound
from ragserver.progress import ACTIVE, Operation, ProgressTracker, Result
from ragserver.replicas import Queued, ReplicaWorker

log = logging.getLogger(__name__)

# Share of the progress bar for discovery; crawling/storing fills the rest.
DISCOVERY_SHARE = 5.0
SnapshotCallback = Callable[[dict[str, Any]], None]


def source_id_for(url: str) -> str:
    """The stable source id of a crawl start URL (same canonical URL, same source)."""
    canonical = canonicalize(url) or url
    host = urlsplit(canonical).hostname or "site"
    return f"{host}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


class CrawlService:
    """Runs crawls in the background (API) or in the foreground (CLI), one Operation each."""

    def __init__(
        self,
        store: CrawlStore,
        ingest_service: DocumentSink,
        settings: Settings,
        progress: ProgressTracker,
        replica: ReplicaWorker | None = None,
    ) -> None:
        self.store = store
        self.ingest = ingest_service
        self.settings = settings
        self.progress = progress
        self.guard = Guard(settings)
        self.converter = Converter(settings.data_dir, settings.crawl_convert_workers, settings.bulk_nice)
        self._running: dict[str, Operation] = {}  # source_id -> the crawl now writing it
        self.replica = replica
        if replica is not None:
            replica.register("crawl", self._run_claimed)

    async def start_crawl(self, request: CrawlRequest, *, name: str | None = None) -> Operation | Queued:
        """Check the target and the budget (refused targets raise 4xx here), then crawl in the background:
        here, or (queued, no room here) on the first replica with room. `name` (the operation's) defaults to
        the start URL."""
        request = await self._budgeted(request)
        if self.replica is None:
            op = self._start_operation(request, name)
        else:
            self._refuse_if_running(request)
            started = await self.replica.submit(
                "crawl",
                name=name or request.url,
                message=f"crawling {request.url}",
                job_key=source_id_for(request.url),
                request=request.model_dump(mode="json"),
            )
            if isinstance(started, Queued):
                return started
            op = started
        self._spawn(op, request)
        return op

    async def start_refresh(self, source_id: str) -> Operation | Queued:
        """Re-crawl a source with the options of its last crawl; its pages are replaced atomically."""
        source = await self.store.get_source(source_id)
        options = (source.get("metadata") or {}).get("crawl")
        if not options:
            raise InputError(f"source {source_id!r} was not crawled from a URL, so it cannot be refreshed")
        labels = {
            "knowledge_type": source.get("knowledge_type") or "technical",
            "tags": source.get("tags") or [],
            "library": source.get("library"),
            "version": source.get("version"),
        }
        request = CrawlRequest.checked(**{"url": source["origin"], **options, **labels})
        return await self.start_crawl(request, name=source.get("title") or request.url)

    async def crawl(self, request: CrawlRequest, on_progress: SnapshotCallback | None = None) -> Result:
        """Crawl in the foreground (the CLI): returns the result, raises when the crawl fails."""
        request = await self._budgeted(request)
        op = self._start_operation(request, None)
        try:
            return await self.progress.run(
                op, self._run(request, op, on_progress), done=_done_message(request), stopped=_stopped(request)
            )
        finally:
            if on_progress is not None:
                on_progress(op.snapshot())  # the final state (100 % or the error) for the progress bar

    def close(self) -> None:
        """Stop the page-conversion workers (at shutdown, after the tracker ended the crawls)."""
        self.converter.close()

    def _run_claimed(self, op: Operation, request: dict[str, Any]) -> None:
        """Run a crawl this replica claimed from the queue."""
        self._spawn(op, CrawlRequest.model_validate(request))

    def _spawn(self, op: Operation, request: CrawlRequest) -> None:
        self._running[source_id_for(request.url)] = op
        self.progress.spawn(op, self._run(request, op), done=_done_message(request), stopped=_stopped(request))

    def _refuse_if_running(self, request: CrawlRequest) -> None:
        """Busy when this process crawls that source right now (two runs would race)."""
        source_id = source_id_for(request.url)
        current = self._running.get(source_id)
        if current is not None and current.status in ACTIVE:
            raise Busy(
                f"{request.url} is already being crawled; stop that crawl or wait for it",
                details={"progressId": current.id, "source_id": source_id},
            )

    def _start_operation(self, request: CrawlRequest, name: str | None) -> Operation:
        """A new crawl operation on `name` (default: the start URL), unless that source is being crawled now."""
        self._refuse_if_running(request)
        op = self.progress.start("crawl", name=name or request.url, message=f"crawling {request.url}")
        self._running[source_id_for(request.url)] = op
        return op

    async def _extracted_alike(self, source_id: str, request: CrawlRequest) -> bool:
        """Whether the source's stored pages were extracted as this crawl would (CrawlRequest.extraction)."""
        try:
            source = await self.store.get_source(source_id)
        except NotFound:
            return False
        stored = ((source.get("metadata") or {}).get("crawl") or {}).get("extraction")
        return bool(stored == request.extraction())

    async def _budgeted(self, request: CrawlRequest) -> CrawlRequest:
        """The request with its page budget filled in (CRAWL_MAX_PAGES), once the guard allows its target."""
        max_pages = request.max_pages or self.settings.crawl_max_pages
        if not 1 <= max_pages <= MAX_PAGES_LIMIT:
            raise InputError(f"CRAWL_MAX_PAGES must be between 1 and {MAX_PAGES_LIMIT}")
        await self.guard.check_url(request.url)
        return request.model_copy(update={"max_pages": max_pages})

    async def _run(self, request: CrawlRequest, op: Operation, on_progress: SnapshotCallback | None = None) -> Result:
        """Crawl and ingest as one run of the source; the runner ends `op` from the outcome."""
        source = _source_info(request)
        try:
            previous = PreviousCrawl(
                await self.store.previous_pages(source.source_id),
                self.store.page_links,
                revalidate=await self._extracted_alike(source.source_id, request),
            )
            crawler = Crawler(
                self.settings,
                request,
                on_progress=_reporter(op, request, on_progress),
                converter=self.converter,
                previous=previous,
            )
            async with contextlib.aclosing(crawler.documents()) as pages:  # a stop closes the fetchers at once
                counts = await self.ingest.ingest_documents(source, pages, op, kind="crawl", progressive=True)
        finally:
            if self._running.get(source.source_id) is op:
                del self._running[source.source_id]
        return {
            "source_id": source.source_id,
            "url": request.url,
            **counts,
            **crawler.stats.counts(),
            "errors": crawler.stats.errors,
        }


def _done_message(request: CrawlRequest) -> Callable[[Result], str]:
    return lambda result: f"crawled {result['pages_crawled']} pages from {request.url}"


def _stopped(request: CrawlRequest) -> str:
    return f"crawl of {request.url} stopped; previous content kept"


def _source_info(request: CrawlRequest) -> SourceInfo:
    parts = urlsplit(canonicalize(request.url) or request.url)
    title = (parts.netloc + parts.path).rstrip("/") or request.url
    return SourceInfo(
        source_id=source_id_for(request.url),
        title=title,
        origin=request.url,
        knowledge_type=request.knowledge_type,
        tags=list(request.tags),
        metadata={
            "crawl": request.options(),
            "extract_code_examples": request.extract_code_examples,
            **source_labels(request.library, request.version),
        },
    )


def _reporter(
    op: Operation, request: CrawlRequest, on_progress: SnapshotCallback | None
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
