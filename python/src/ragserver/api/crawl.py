"""Crawls as Archon v1 starts them: a URL becomes a source, re-crawled by refresh."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from ragserver.api.deps import CrawlDep
from ragserver.crawl.service import MAX_DEPTH_LIMIT, MAX_PAGES_LIMIT, CrawlRequest

router = APIRouter(prefix="/api/knowledge-items", tags=["crawl"])

Pattern = Annotated[str, Field(min_length=1, max_length=500)]


class CrawlBody(BaseModel):
    url: Annotated[str, Field(min_length=1, max_length=2000)]
    knowledge_type: Annotated[str, Field(min_length=1, max_length=50)] = "technical"
    tags: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=50)] = []
    max_depth: Annotated[int, Field(ge=0, le=MAX_DEPTH_LIMIT)] = 2
    max_pages: Annotated[int | None, Field(ge=1, le=MAX_PAGES_LIMIT)] = None
    include_patterns: Annotated[list[Pattern], Field(max_length=100)] = []
    exclude_patterns: Annotated[list[Pattern], Field(max_length=100)] = []
    extract_code_examples: bool = True


class CrawlStarted(BaseModel):
    success: bool
    progressId: str
    message: str


@router.post("/crawl", response_model=CrawlStarted)
async def start_crawl(body: CrawlBody, crawl: CrawlDep) -> CrawlStarted:
    """Crawl a site (sitemap, llms.txt or links up to max_depth) in the background."""
    op = await crawl.start_crawl(CrawlRequest(**body.model_dump()))
    return CrawlStarted(success=True, progressId=op.id, message="Crawling started")


@router.post("/{source_id}/refresh", response_model=CrawlStarted)
async def refresh(source_id: Annotated[str, Path(min_length=1, max_length=500)], crawl: CrawlDep) -> CrawlStarted:
    """Re-crawl a source with its last options; its content is replaced only when the crawl succeeds."""
    op = await crawl.start_refresh(source_id)
    return CrawlStarted(success=True, progressId=op.id, message=f"refreshing {source_id}")
