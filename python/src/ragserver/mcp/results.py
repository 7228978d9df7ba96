"""What the MCP tools answer: Archon v1's shapes (`success`, `results`, `reranked`, `sources`,
`pages`, `page`) plus what a model needs to cite a result and to go deeper.

Search hits reuse the HTTP API's models; a page hit carries a preview (its best matching chunk)
instead of the whole page, so five hits stay readable in a model's context, and the model calls
`rag_read_full_page` for the page it wants.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ragserver.catalog.results import PageContent, PageListing, SourceSummary
from ragserver.progress import ProgressSnapshot
from ragserver.search.results import (
    ChunkResult,
    CodeExampleResult,
    MatchedChunk,
    PageResult,
    QueryResponse,
    RerankSkipped,
    ReturnMode,
    SearchMode,
)

PREVIEW_CHARS = 1200
SNIPPET_CHARS = 300  # of each matched chunk of a page hit: where on the page the matches are


class ArchonAnswer(BaseModel):
    """Archon v1's envelope of every answer: `success`, and `error` (null: a failure is a tool error)."""

    success: bool = True
    error: None = None


class SearchStages(BaseModel):
    """Which stages of the search ran, so a model can tell a degraded answer from a full one."""

    search_mode: SearchMode = Field(description="hybrid (vector + full text) or full_text (no embedder)")
    reranking_applied: bool
    rerank_skipped: RerankSkipped | None = Field(description="Why nothing was reranked, when reranking was wanted")
    rerank_candidates: int = Field(description="Candidates in line for the reranker")
    reranked_count: int = Field(description="Candidates the reranker scored within RERANK_BUDGET_MS")
    rerank_budget_ms: int | None = Field(description="The rerank time budget applied; null = none")
    rerank_ms: float | None = Field(description="Time spent reranking")
    embedding_model: str | None
    reranker_model: str | None

    @classmethod
    def of(cls, answer: QueryResponse) -> SearchStages:
        """The answer's fields of the same names."""
        return cls.model_validate(answer, from_attributes=True)


class PageHit(BaseModel):
    """A page that matched, ranked by its best chunk; its whole text is one rag_read_full_page away."""

    id: int = Field(description="Page id (the same as page_id)")
    page_id: int
    source_id: str
    url: str
    title: str
    heading_path: list[str] = Field(description="Headings above the best matching chunk")
    preview: str = Field(description=f"The best matching chunk's text (at most {PREVIEW_CHARS} characters)")
    word_count: int
    char_count: int
    similarity: float | None
    fused_score: float
    rerank_score: float | None
    chunk_matches: int
    matched_chunks: list[MatchedChunk] = Field(
        description=f"The page's matching chunks, best first, each text cut at {SNIPPET_CHARS} characters"
    )

    @classmethod
    def of(cls, page: PageResult) -> PageHit:
        best = page.matched_chunks[0]
        return cls(
            id=page.page_id,
            page_id=page.page_id,
            source_id=page.source_id,
            url=page.url,
            title=page.title,
            heading_path=best.heading_path,
            preview=best.content[:PREVIEW_CHARS],
            word_count=len(page.content.split()),
            char_count=len(page.content),
            similarity=page.similarity,
            fused_score=page.fused_score,
            rerank_score=page.rerank_score,
            chunk_matches=page.chunk_matches,
            matched_chunks=[c.model_copy(update={"content": c.content[:SNIPPET_CHARS]}) for c in page.matched_chunks],
        )


class KnowledgeSearchAnswer(ArchonAnswer):
    """rag_search_knowledge_base's answer."""

    query: str
    source_id: str | None
    return_mode: ReturnMode
    results: list[ChunkResult | PageHit]
    total_found: int
    reranked: bool = Field(description="Archon's flag: the results are in reranker order")
    stages: SearchStages
    latency_ms: float

    @classmethod
    def of(cls, answer: QueryResponse, latency_ms: float) -> KnowledgeSearchAnswer:
        results = [PageHit.of(r) if isinstance(r, PageResult) else r for r in answer.results]
        return cls(
            query=answer.query,
            source_id=answer.source,
            return_mode=answer.return_mode,
            results=results,
            total_found=len(results),
            reranked=answer.reranking_applied,
            stages=SearchStages.of(answer),
            latency_ms=round(latency_ms, 1),
        )


class CodeSearchAnswer(ArchonAnswer):
    """rag_search_code_examples' answer."""

    query: str
    source_id: str | None
    results: list[CodeExampleResult]
    total_found: int
    reranked: bool = Field(default=False, description="Code examples are ranked by fusion only")
    search_mode: SearchMode
    latency_ms: float


class SourcesAnswer(ArchonAnswer):
    """rag_get_available_sources' answer."""

    sources: list[SourceSummary]
    count: int


class PagesAnswer(ArchonAnswer, PageListing):
    """rag_list_pages_for_source's answer: one slice of the source's pages."""


class FullPageAnswer(ArchonAnswer):
    """rag_read_full_page's answer: the page, or one slice of a long one."""

    page: PageContent


class OperationStarted(ArchonAnswer):
    """crawl_url's and refresh_source's answer: follow it with get_progress(progress_id)."""

    progress_id: str
    source_id: str
    message: str


class OperationAnswer(ArchonAnswer):
    """get_progress's answer."""

    operation: ProgressSnapshot


class StopAnswer(ArchonAnswer):
    """stop_operation's answer."""

    progress_id: str
    cancelled: bool = Field(description="False when the operation had already ended")
    message: str
