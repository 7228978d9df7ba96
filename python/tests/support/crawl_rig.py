"""The crawl service on real parts for the crawl-service tests (runs room): fixture site ->
crawler -> IngestService (real MiniLM embeddings) -> the test's own Postgres, and reads of what
was stored, straight from Postgres.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import psycopg

from ragserver.config import Settings
from ragserver.crawl.service import CrawlService
from ragserver.ingest.service import IngestService
from ragserver.ml.service import MLService
from ragserver.progress import Operation, ProgressTracker
from ragserver.store import Store
from support.site_fixtures import crawl_settings


@dataclasses.dataclass
class Rig:
    crawl: CrawlService
    tracker: ProgressTracker
    settings: Settings
    store: Store


def make_rig(
    store: Store, pg_settings: Settings, ml_service: MLService, ml_settings: Settings, tmp_path: Path, **overrides: Any
) -> Rig:
    """A CrawlService over the test's store and the session's models; `overrides` are settings."""
    settings = dataclasses.replace(
        crawl_settings(tmp_path),
        database_url=pg_settings.database_url,
        embedding_model=ml_settings.embedding_model,
        code_example_min_chars=20,
        **overrides,
    )
    tracker = ProgressTracker()
    ingest = IngestService(store, ml_service, settings, tracker)
    return Rig(CrawlService(store, ingest, settings, tracker), tracker, settings, store)


async def stored_pages(settings: Settings, source_id: str) -> dict[str, str]:
    """url -> markdown of the source's active generation, read straight from Postgres."""
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        rows = await (
            await conn.execute(
                "SELECT p.url, p.markdown FROM rag_pages p JOIN rag_sources s ON s.active_run_id = p.run_id "
                "WHERE s.source_id = %s",
                (source_id,),
            )
        ).fetchall()
    urls = [r[0] for r in rows]
    assert len(urls) == len(set(urls)), "a page was stored twice"
    return dict(rows)


async def row_counts(settings: Settings, source_id: str) -> tuple[int, list[str]]:
    """All page rows of the source (any generation) and the status of each run, oldest first."""
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        pages = await (
            await conn.execute("SELECT count(*) FROM rag_pages WHERE source_id = %s", (source_id,))
        ).fetchone()
        runs = await (
            await conn.execute("SELECT status FROM rag_runs WHERE source_id = %s ORDER BY run_id", (source_id,))
        ).fetchall()
    assert pages is not None
    return pages[0], [r[0] for r in runs]


async def finished(op: Operation, timeout: float = 120) -> Operation:
    async with asyncio.timeout(timeout):
        await op.ended()
    return op


def pushed_count_reached(tracker: ProgressTracker, name: str, count: int) -> asyncio.Event:
    """An event set once the tracker pushes a snapshot whose counter `name` is at least `count`."""
    reached = asyncio.Event()

    async def listener(snapshot: dict[str, Any]) -> None:
        if snapshot["counts"].get(name, 0) >= count:
            reached.set()

    tracker.add_listener(listener)
    return reached
