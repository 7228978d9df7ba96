"""Crawl routes with Archon v1's paths and shapes: start a crawl, refresh a crawled source.

Both answer at once with a progressId; the crawl runs in the background and reports through the
progress routes and Socket.IO. Stopping is the shared `POST /api/knowledge-items/stop/{id}`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from ragserver.api.deps import CrawlDep
from ragserver.api.handlers import error_responses
from ragserver.crawl.service import MAX_DEPTH_LIMIT, MAX_PAGES_LIMIT, CrawlRequest, source_id_for

router = APIRouter(prefix="/api", tags=["crawl"])

MAX_PATTERNS = 50
Pattern = Annotated[str, Field(min_length=1, max_length=500)]
Tag = Annotated[str, Field(min_length=1, max_length=100)]


class CrawlBody(BaseModel):
    url: str = Field(min_length=1, max_length=2048, description="Start URL: a page, a sitemap, llms.txt or a text file")
    knowledge_type: str = Field("technical", min_length=1, max_length=50)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    max_depth: int = Field(2, ge=0, le=MAX_DEPTH_LIMIT, description="Link depth from the start page (0 = it alone)")
    max_pages: int | None = Field(None, ge=1, le=MAX_PAGES_LIMIT, description="Page budget; default CRAWL_MAX_PAGES")
    include_patterns: list[Pattern] = Field(default_factory=list, max_length=MAX_PATTERNS)
    exclude_patterns: list[Pattern] = Field(default_factory=list, max_length=MAX_PATTERNS)
    extract_code_examples: bool = True


class CrawlStarted(BaseModel):
    success: bool
    progressId: str
    message: str
    source_id: str | None = None


@router.post("/knowledge-items/crawl", response_model=CrawlStarted)
async def start_crawl(body: CrawlBody, crawl: CrawlDep) -> CrawlStarted:
    """Start crawling a site; 400 for a refused target (private address, bad scheme)."""
    op = await crawl.start_crawl(CrawlRequest(**body.model_dump()))
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
