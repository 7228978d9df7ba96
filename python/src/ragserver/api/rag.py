"""Knowledge queries: hybrid search over chunks or pages, and code examples (Archon v1 paths)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ragserver.api.deps import SearchDep
from ragserver.api.handlers import error_responses
from ragserver.search.service import MAX_QUERY_CHARS

router = APIRouter(prefix="/api/rag", tags=["rag"])

QueryText = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for")]
SourceFilter = Annotated[str | None, Field(default=None, max_length=500, description="Only this source_id")]
MatchCount = Annotated[int, Field(ge=1, le=100)]


class QueryRequest(BaseModel):
    query: QueryText
    source: SourceFilter = None
    match_count: MatchCount = 5
    return_mode: Literal["chunks", "pages"] = "chunks"


class CodeExamplesRequest(BaseModel):
    query: QueryText
    source: SourceFilter = None
    match_count: MatchCount = 5


class SearchResponse(BaseModel):
    """Results plus which stages ran: `search_mode` hybrid|full_text, `reranking_applied`."""

    model_config = ConfigDict(extra="allow")

    success: bool
    query: str
    results: list[dict[str, Any]]
    search_mode: Literal["hybrid", "full_text"]
    total_found: int


class QueryResponse(SearchResponse):
    reranking_applied: bool
    match_count: int
    return_mode: Literal["chunks", "pages"]


@router.post("/query", response_model=QueryResponse, responses=error_responses(429))
async def rag_query(body: QueryRequest, search: SearchDep) -> dict[str, Any]:
    """Hybrid (vector + full-text, RRF) search, reranked when the reranker is ready."""
    return await search.query(
        body.query, source_id=body.source, match_count=body.match_count, return_mode=body.return_mode
    )


@router.post("/code-examples", response_model=SearchResponse, responses=error_responses(429))
async def rag_code_examples(body: CodeExamplesRequest, search: SearchDep) -> dict[str, Any]:
    """Code examples whose code or surrounding text match the query."""
    return await search.code_examples(body.query, source_id=body.source, match_count=body.match_count)
