"""Grouping of ranked chunks into ranked pages (return_mode="pages").

A page ranks by its best chunk (reranked score when present, else the fused score), which is
also how the retrieval benchmark scores documents.
"""

from __future__ import annotations

from typing import Any

from ragserver.domain import SearchHit


def hit_rank_key(hit: SearchHit) -> float:
    """The score a hit is ordered by: rerank score when reranked, else fused score."""
    return hit.rerank_score if hit.rerank_score is not None else hit.score


def group_hits_by_page(hits: list[SearchHit]) -> list[dict[str, Any]]:
    """Pages in the order of their best chunk, each with the chunks that matched."""
    pages: dict[int, dict[str, Any]] = {}
    for position, hit in enumerate(hits):
        page = pages.get(hit.page_id)
        if page is None:
            page = pages[hit.page_id] = {
                "page_id": hit.page_id,
                "source_id": hit.source_id,
                "url": hit.url,
                "title": hit.title,
                "score": hit.score,
                "rerank_score": hit.rerank_score,
                "best_position": position,
                "chunk_matches": 0,
                "matched_chunks": [],
            }
        page["chunk_matches"] += 1
        page["matched_chunks"].append(
            {"id": hit.chunk_id, "heading_path": hit.heading_path, "score": hit_rank_key(hit)}
        )
    ordered = sorted(pages.values(), key=lambda p: p["best_position"])
    for page in ordered:
        del page["best_position"]
    return ordered
