"""Knowledge queries: hybrid search over chunks or pages, and code examples (Archon v1 paths)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ragserver.api.deps import SearchDep
from ragserver.api.handlers import error_responses
from ragserver.domain import MAX_LABEL_CHARS
from ragserver.search.budget import MAX_BUDGET_MS, NO_BUDGET
from ragserver.search.results import CodeExamplesResponse, QueryResponse, ReturnMode
from ragserver.search.service import MAX_QUERY_CHARS

router = APIRouter(prefix="/api/rag", tags=["rag"])

QueryText = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for")]
SourceFilter = Annotated[str | None, Field(default=None, max_length=500, description="Only this source_id")]
MatchCount = Annotated[int, Field(ge=1, le=100)]
RerankBudget = Annotated[
    int | None,
    Field(
        default=None,
        ge=NO_BUDGET,
        le=MAX_BUDGET_MS,
        description="Rerank time budget of this query in ms: -1 none, 0 auto; null: RERANK_BUDGET_MS",
    ),
]
LibraryFilter = Annotated[
    str | None, Field(default=None, max_length=MAX_LABEL_CHARS, description="Only sources of this library")
]
VersionFilter = Annotated[
    str | None, Field(default=None, max_length=MAX_LABEL_CHARS, description="Only sources of this library version")
]


class QueryRequest(BaseModel):
    query: QueryText
    source: SourceFilter = None
    match_count: MatchCount = 5
    return_mode: ReturnMode = "chunks"
    library: LibraryFilter = None
    version: VersionFilter = None
    rerank_budget_ms: RerankBudget = None


class CodeExamplesRequest(BaseModel):
    query: QueryText
    source: SourceFilter = None
    match_count: MatchCount = 5
    library: LibraryFilter = None
    version: VersionFilter = None


@router.post("/query", response_model=QueryResponse, responses=error_responses(429))
async def rag_query(body: QueryRequest, search: SearchDep) -> QueryResponse:
    """Hybrid (vector + full-text, RRF) search, reranked (a loading reranker is waited for: RERANK_LOAD_WAIT_S)."""
    return await search.query(
        body.query,
        source_id=body.source,
        match_count=body.match_count,
        return_mode=body.return_mode,
        library=body.library,
        version=body.version,
        rerank_budget_ms=body.rerank_budget_ms,
    )


@router.post("/code-examples", response_model=CodeExamplesResponse, responses=error_responses(429))
async def rag_code_examples(body: CodeExamplesRequest, search: SearchDep) -> CodeExamplesResponse:
    """Code examples whose code or surrounding text match the query."""
    return await search.code_examples(
        body.query, source_id=body.source, match_count=body.match_count, library=body.library, version=body.version
    )
