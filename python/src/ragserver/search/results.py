"""What a search answers, as typed models: the service returns them and the API publishes them.

Field names follow Archon v1 (`id`, `url`, `title`, `content`, `metadata`, `source_id`,
`similarity`) so its clients read our answers unchanged; our own fields say where each number
comes from, because three different scores are in play:

- `similarity`: Archon's meaning, the cosine similarity of the chunk's vector to the query
  vector; null when the chunk was found by full text only (or no embedder is loaded).
- `fused_score`: the reciprocal rank fusion score of the vector and full-text ranks (RRF_K),
  the order when nothing was reranked.
- `rerank_score`: the reranker's relevance in [0, 1], the order when `reranking_applied`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue

from ragserver.domain import CodeExampleHit, SearchHit

# full_text: no embedder at all (no ML env); full_text_fallback: an embedder is configured but failed (to load, or
# to embed this query: a remote embedding server down, timing out or answering garbage; /health says why).
SearchMode = Literal["hybrid", "full_text", "full_text_fallback"]
ReturnMode = Literal["chunks", "pages"]
# Why an answer is in fused order although reranking was wanted: reranking off (USE_RERANKING or
# the caller), still loading after RERANK_LOAD_WAIT_S, no usable ML env or model, it failed on
# this query (the fused order is kept), or the rerank budget did not fit a single candidate.
RerankSkipped = Literal["disabled", "loading", "unavailable", "failed", "error", "budget"]

Similarity = Field(
    default=None, description="Cosine similarity of the chunk's vector to the query; null if found by full text only"
)
FusedScore = Field(description="Reciprocal rank fusion score of the vector and full-text ranks")
RerankScore = Field(default=None, description="Reranker relevance in [0, 1]; null when not reranked")


class ChunkResult(BaseModel):
    """One chunk of a page, with its ranks and scores."""

    id: int = Field(description="Chunk id")
    page_id: int
    source_id: str
    url: str
    title: str
    content: str
    heading_path: list[str]
    metadata: dict[str, JsonValue]
    similarity: float | None = Similarity
    fused_score: float = FusedScore
    rerank_score: float | None = RerankScore
    vector_rank: int | None = Field(default=None, description="Rank among the vector candidates (1 = nearest)")
    text_rank: int | None = Field(default=None, description="Rank among the full-text candidates")

    @classmethod
    def from_hit(cls, hit: SearchHit) -> ChunkResult:
        return cls(
            id=hit.chunk_id,
            page_id=hit.page_id,
            source_id=hit.source_id,
            url=hit.url,
            title=hit.title,
            content=hit.content,
            heading_path=hit.heading_path,
            metadata=hit.metadata,
            similarity=hit.similarity,
            fused_score=hit.fused_score,
            rerank_score=hit.rerank_score,
            vector_rank=hit.vector_rank,
            text_rank=hit.text_rank,
        )


class MatchedChunk(BaseModel):
    """A chunk that made its page match, in ranked order."""

    id: int
    heading_path: list[str]
    content: str = Field(description="The chunk's text: the part of the page that matched")
    similarity: float | None = Similarity
    fused_score: float = FusedScore
    rerank_score: float | None = RerankScore

    @classmethod
    def from_hit(cls, hit: SearchHit) -> MatchedChunk:
        return cls(
            id=hit.chunk_id,
            heading_path=hit.heading_path,
            content=hit.content,
            similarity=hit.similarity,
            fused_score=hit.fused_score,
            rerank_score=hit.rerank_score,
        )


class PageResult(BaseModel):
    """A whole page (markdown), ranked by its best chunk; return_mode="pages"."""

    id: int = Field(description="Page id")
    page_id: int
    source_id: str
    url: str
    title: str
    content: str = Field(description="The page's markdown")
    metadata: dict[str, JsonValue]
    similarity: float | None = Field(default=None, description="The best matched chunk's cosine similarity")
    fused_score: float = Field(description="The best chunk's reciprocal rank fusion score")
    rerank_score: float | None = Field(default=None, description="The best chunk's reranker relevance")
    chunk_matches: int = Field(description="How many of the page's chunks matched")
    matched_chunks: list[MatchedChunk]

    @classmethod
    def from_page(cls, page: Mapping[str, Any], hits: list[SearchHit]) -> PageResult:
        """A page row of the store (`markdown`, `metadata`) with its matched chunks, best first."""
        chunks = [MatchedChunk.from_hit(hit) for hit in hits]
        best = chunks[0]
        return cls(
            id=page["page_id"],
            page_id=page["page_id"],
            source_id=page["source_id"],
            url=page["url"],
            title=page["title"],
            content=page["markdown"],
            metadata=page["metadata"] or {},
            similarity=best.similarity,
            fused_score=best.fused_score,
            rerank_score=best.rerank_score,
            chunk_matches=len(chunks),
            matched_chunks=chunks,
        )


class QueryResponse(BaseModel):
    """Results plus which stages ran: `search_mode` hybrid|full_text, `reranking_applied` and if not, why."""

    success: bool = True
    query: str
    source: str | None
    match_count: int
    return_mode: ReturnMode
    search_mode: SearchMode
    reranking_applied: bool
    rerank_skipped: RerankSkipped | None = Field(
        default=None, description="Why the results are in fused order although reranking was wanted"
    )
    rerank_candidates: int = Field(default=0, description="How many fused candidates went in line for reranking")
    reranked_count: int = Field(
        default=0, description="How many of them were reranked within the budget (they come first, by rerank_score)"
    )
    rerank_budget_ms: int | None = Field(
        default=None, description="The rerank time budget applied, in ms; null: none (or nothing went to the reranker)"
    )
    rerank_ms: float | None = Field(default=None, description="Time spent reranking, in ms; null when nothing was")
    embedding_model: str | None
    reranker_model: str | None
    results: list[ChunkResult | PageResult] = Field(description="Chunks, or pages when return_mode is pages")
    total_found: int


class CodeExampleResult(BaseModel):
    """A code example (a long fenced block) with the text around it and the page it is on."""

    id: int = Field(description="Code example id")
    page_id: int
    source_id: str
    url: str
    title: str
    content: str = Field(description="The code")
    metadata: dict[str, JsonValue] = Field(description="Archon's place for the language: {'language': ...}")
    language: str
    context: str = Field(description="Text around the code block on its page")
    heading_path: list[str]
    similarity: float | None = Field(
        default=None, description="Cosine similarity to the query of the best chunk on the example's page; null if none"
    )
    fused_score: float = FusedScore
    vector_rank: int | None = Field(default=None, description="Vector rank of the page the example is on")
    text_rank: int | None = Field(default=None, description="Rank among the full-text candidates")

    @classmethod
    def from_hit(cls, hit: CodeExampleHit) -> CodeExampleResult:
        """A hit of the store's code-example search."""
        return cls(
            id=hit.code_example_id,
            page_id=hit.page_id,
            source_id=hit.source_id,
            url=hit.url,
            title=hit.title,
            content=hit.code,
            metadata={"language": hit.language},
            language=hit.language,
            context=hit.context,
            heading_path=hit.heading_path,
            similarity=hit.similarity,
            fused_score=hit.fused_score,
            vector_rank=hit.vector_rank,
            text_rank=hit.text_rank,
        )


class CodeExamplesResponse(BaseModel):
    """Code examples matching a query, and which search ran."""

    success: bool = True
    query: str
    source: str | None
    match_count: int
    search_mode: SearchMode
    results: list[CodeExampleResult]
    total_found: int
