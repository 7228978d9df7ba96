"""Crawled pages to markdown off the event loop, through the one conversion uploads use (ingest/html.py).

crawl4ai is imported lazily, on the first page: importing it is slow, pulls in
playwright's Python module, and creates its home folder (~/.crawl4ai, or
$CRAWL4_AI_BASE_DIRECTORY). The server points that folder at DATA_DIR before the first import so
nothing is written into the user's home.

The conversion is pure-Python CPU work (BENCHMARKS.md has its cost per page), so threads would
serialize on the GIL: `Converter` runs it in a pool of worker processes (one per core by default,
CRAWL_CONVERT_WORKERS), started on the first page and kept for the life of the server. The
workers run at bulk priority (BULK_NICE, lowpriority.py), so searches and the event loop go
first when the cores are busy.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from ragserver.ingest.content import ContentRules
from ragserver.ingest.html import Converted, convert_html
from ragserver.lowpriority import bulk_executor, lower_current_thread


def prepare_crawl4ai(data_dir: Path) -> None:
    """Keep crawl4ai's import-time folder and banner out of the user's home and logs."""
    os.environ.setdefault("CRAWL4_AI_BASE_DIRECTORY", str(Path(data_dir).resolve()))
    os.environ.setdefault("CRAWL4AI_NO_CLOUD_NOTICE", "1")


def _start_worker(data_dir: Path, nice: int) -> None:
    """Initializer of a conversion process: crawl4ai's folder, bulk priority."""
    prepare_crawl4ai(data_dir)
    lower_current_thread(nice)


class Converter:
    """`convert_html` off the event loop: in worker processes, or in one thread when workers == 1."""

    def __init__(self, data_dir: Path, workers: int, nice: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.workers = workers if workers > 0 else (os.cpu_count() or 1)
        self.nice = nice
        self._pool: ProcessPoolExecutor | ThreadPoolExecutor | None = None
        prepare_crawl4ai(self.data_dir)  # before any upload imports crawl4ai in this process

    async def convert(self, url: str, html: str, rules: ContentRules | None = None) -> Converted:
        """Title, main-content markdown, links and link share of one page (`rules`: the crawl's selectors)."""
        if self._pool is None and self.workers == 1:
            self._pool = bulk_executor("convert", self.nice)
        elif self._pool is None:
            # spawn, not fork: the server has threads (ML worker, DB pool) that fork would copy mid-state
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.data_dir, self.nice),
            )
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, convert_html, html, url, rules or ContentRules()
        )

    def close(self) -> None:
        """Stop the worker processes (pending conversions are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
