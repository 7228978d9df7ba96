"""Crawl routes with Archon v1's paths and shapes: start a crawl, refresh a crawled source.

Both answer at once with a progressId; the crawl runs in the background and reports through the
progress routes and Socket.IO. Stopping is the shared `POST /api/knowledge-items/stop/{id}`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from ragserver.api.deps import CrawlDep
from ragserver.api.handlers import error_responses
from ragserver.crawl.request import CrawlRequest
from ragserver.crawl.service import source_id_for

router = APIRouter(prefix="/api", tags=["crawl"])


class CrawlStarted(BaseModel):
    success: bool
    progressId: str
    message: str
    source_id: str | None = None


@router.post("/knowledge-items/crawl", response_model=CrawlStarted)
async def start_crawl(body: CrawlRequest, crawl: CrawlDep) -> CrawlStarted:
    """Start crawling a site; 400 for a refused target (private address, bad scheme)."""
    op = await crawl.start_crawl(body)
    return CrawlStarted(
        success=True, progressId=op.id, message=f"Crawl started for {body.url}", source_id=source_id_for(body.url)
    )


@router.post("/knowledge-items/{source_id}/refresh", response_model=CrawlStarted, responses=error_responses(404))
async def refresh_source(
    source_id: Annotated[str, Path(min_length=1, max_length=500)], crawl: CrawlDep
) -> CrawlStarted:
    """Re-crawl a source with its last options; its content is replaced only when the crawl succeeds."""
    op = await crawl.start_refresh(source_id)
    return CrawlStarted(success=True, progressId=op.id, message=f"Refresh started for {source_id}", source_id=source_id)
