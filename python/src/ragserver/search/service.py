"""The query path: embed -> hybrid retrieval in the store -> rerank -> chunks or pages.

Every answer says which stages ran (`search_mode`, `reranking_applied`) so a caller can tell a
degraded answer (no ML env: full-text only) from a full one.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from ragserver.config import Settings
from ragserver.domain import SearchHit
from ragserver.errors import Busy, InputError, MLError, Unavailable
from ragserver.search.pages import group_hits_by_page

log = logging.getLogger(__name__)

ReturnMode = Literal["chunks", "pages"]
MAX_QUERY_CHARS = 4000


class SearchService:
    """Answers knowledge queries over the store, using the ML service when it is ready."""

    def __init__(self, store: Any, ml: Any, settings: Settings) -> None:
        self.store = store
        self.ml = ml
        self.settings = settings

    async def query(
        self,
        query: str,
        *,
        source_id: str | None = None,
        match_count: int = 5,
        return_mode: ReturnMode = "chunks",
        rerank: bool | None = None,
    ) -> dict[str, Any]:
        """Hybrid search (or full text without an embedder), reranked when possible."""
        query = _clean_query(query)
        if match_count < 1:
            raise InputError("match_count must be at least 1")
        use_rerank = self.settings.use_reranking if rerank is None else rerank
        embedding, model = await self._embed_query(query)
        wanted = max(match_count, self.settings.rerank_top_n) if use_rerank else match_count
        hits: list[SearchHit] = await self.store.hybrid_search(
            query,
            embedding,
            model,
            match_count=wanted,
            source_id=source_id,
            rrf_k=self.settings.rrf_k,
            candidates=max(self.settings.search_candidates, wanted),
        )
        reranked = False
        if use_rerank and hits and self.ml.reranker_ready:
            hits, reranked = await self._rerank(query, hits)
        response: dict[str, Any] = {
            "success": True,
            "query": query,
            "source": source_id,
            "match_count": match_count,
            "return_mode": return_mode,
            "search_mode": "hybrid" if embedding is not None else "full_text",
            "reranking_applied": reranked,
            "embedding_model": model,
            "reranker_model": self.settings.reranker_model if reranked else None,
        }
        if return_mode == "pages":
            groups = group_hits_by_page(hits)[:match_count]
            pages = await self.store.get_pages([g["page_id"] for g in groups])
            by_id = {p["page_id"]: p for p in pages}
            results = [{**g, "content": by_id[g["page_id"]]["markdown"]} for g in groups if g["page_id"] in by_id]
        else:
            results = [_chunk_result(h) for h in hits[:match_count]]
        response["results"] = results
        response["total_found"] = len(results)
        return response

    async def code_examples(self, query: str, *, source_id: str | None = None, match_count: int = 5) -> dict[str, Any]:
        """Code examples whose code or surrounding text match the query."""
        query = _clean_query(query)
        embedding, model = await self._embed_query(query)
        rows = await self.store.search_code_examples(
            query, embedding, model, match_count=match_count, source_id=source_id
        )
        return {
            "success": True,
            "query": query,
            "search_mode": "hybrid" if embedding is not None else "full_text",
            "results": rows,
            "total_found": len(rows),
        }

    async def _embed_query(self, query: str) -> tuple[list[float] | None, str | None]:
        """The query vector and its model, or (None, None) to fall back to full text."""
        if not self.ml.embedder_ready:
            return None, None
        try:
            [vector] = await self.ml.embed([query])
        except Busy:
            raise
        except (Unavailable, MLError) as exc:
            log.warning("query embedding failed, answering with full text: %s", exc)
            return None, None
        return vector, self.ml.embedding_model

    async def _rerank(self, query: str, hits: list[SearchHit]) -> tuple[list[SearchHit], bool]:
        """Rerank the top RERANK_TOP_N fused hits; the rest keep their fused order below them."""
        head = hits[: self.settings.rerank_top_n]
        tail = hits[self.settings.rerank_top_n :]
        try:
            scores = await self.ml.rerank(query, [h.content for h in head])
        except Busy:
            raise
        except (Unavailable, MLError) as exc:
            log.warning("reranking failed, keeping fused order: %s", exc)
            return hits, False
        for hit, score in zip(head, scores, strict=True):
            hit.rerank_score = float(score)
        head.sort(key=lambda h: h.rerank_score or 0.0, reverse=True)
        return head + tail, True


def _clean_query(query: str) -> str:
    """Trim and bound the query text; an empty query is a client error."""
    query = (query or "").strip()
    if not query:
        raise InputError("query must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"query is longer than {MAX_QUERY_CHARS} characters")
    return query


def _chunk_result(hit: SearchHit) -> dict[str, Any]:
    """One chunk as the API returns it (Archon-compatible field names plus our scores)."""
    return {
        "id": hit.chunk_id,
        "page_id": hit.page_id,
        "source_id": hit.source_id,
        "url": hit.url,
        "title": hit.title,
        "content": hit.content,
        "heading_path": hit.heading_path,
        "metadata": hit.metadata,
        "score": hit.score,
        "similarity": hit.score,
        "vector_rank": hit.vector_rank,
        "text_rank": hit.text_rank,
        "rerank_score": hit.rerank_score,
    }
