"""Grouping of ranked chunks into ranked pages (return_mode="pages").

A page ranks by its best chunk, i.e. by the first of its chunks in the ranked list (reranked
order when reranked, else fused order), which is also how the retrieval benchmark scores
documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragserver.domain import SearchHit


@dataclass
class PageHits:
    """The matched chunks of one page, in ranked order: the first one ranks the page."""

    page_id: int
    hits: list[SearchHit] = field(default_factory=list)

    @property
    def best(self) -> SearchHit:
        return self.hits[0]


def group_hits_by_page(hits: list[SearchHit]) -> list[PageHits]:
    """Pages in the order of their best chunk, each with the chunks that matched."""
    pages: dict[int, PageHits] = {}
    for hit in hits:
        pages.setdefault(hit.page_id, PageHits(hit.page_id)).hits.append(hit)
    return list(pages.values())  # a dict keeps first-insertion order: the order of each page's best chunk
