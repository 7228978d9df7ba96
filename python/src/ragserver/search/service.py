"""The query path: embed -> hybrid retrieval in the store -> rerank -> chunks or pages.

Every answer says which stages ran (`search_mode`, `reranking_applied`, and `rerank_skipped`
when reranking was wanted but did not happen) so a caller can tell a degraded answer (no ML
env: full-text only) from a full one. A reranker that is still loading (the first seconds after
start) is waited for, up to RERANK_LOAD_WAIT_S, rather than silently skipped. Reranking is
bounded in time by RERANK_BUDGET_MS (search.budget); the answer says how many candidates were
in line for it and how many were reranked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from ragserver.clock import Clock, LoopClock
from ragserver.config import Settings
from ragserver.domain import SearchHit, SearchOptions, clean_label
from ragserver.errors import Busy, ConfigError, InputError, MLError, RemoteModelError, Unavailable
from ragserver.search.budget import BudgetedReranker, check_budget_ms, resolve_budget_ms
from ragserver.search.contracts import SearchModels, SearchStore
from ragserver.search.pages import group_hits_by_page
from ragserver.search.results import (
    ChunkResult,
    CodeExampleResult,
    CodeExamplesResponse,
    PageResult,
    QueryResponse,
    RerankSkipped,
    ReturnMode,
    SearchMode,
)

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 4000
MAX_FUSED_HITS = 1000  # the store's match_count limit
PAGE_FILL_FACTOR = 4
# The reranker's state (MLService.reranker_state) -> why a search that wanted reranking did not rerank.
_SKIPPED_BECAUSE: dict[str, RerankSkipped] = {
    "disabled": "disabled",
    "not_started": "loading",
    "loading": "loading",
    "failed": "failed",
}


@dataclass
class _Reranking:
    """The hits after the rerank stage and what the answer says of it."""

    hits: list[SearchHit]
    skipped: RerankSkipped | None
    candidates: int = 0
    reranked: int = 0
    budget_ms: int | None = None
    elapsed_ms: float | None = None


class SearchService:
    """Answers knowledge queries over the store, using the ML service when it is ready.

    `clock` times the rerank budget (the loop's by default; tests step it).
    """

    def __init__(self, store: SearchStore, ml: SearchModels, settings: Settings, clock: Clock | None = None) -> None:
        self.store = store
        self.ml = ml
        self.settings = settings
        try:
            check_budget_ms(settings.rerank_budget_ms)
        except InputError as exc:
            raise ConfigError(f"RERANK_BUDGET_MS: {exc.message}") from exc
        self._reranker = BudgetedReranker(ml, clock or LoopClock())

    async def query(
        self,
        query: str,
        *,
        source_id: str | None = None,
        match_count: int = 5,
        return_mode: ReturnMode = "chunks",
        rerank: bool | None = None,
        library: str | None = None,
        version: str | None = None,
        rerank_budget_ms: int | None = None,
    ) -> QueryResponse:
        """Hybrid search (or full text without an embedder), reranked when possible.

        `rerank` overrides USE_RERANKING for this query (benchmarks compare both). `library` and
        `version` search only the sources labelled so (case-insensitive; None: any).
        `rerank_budget_ms` overrides RERANK_BUDGET_MS (-1 none, 0 auto, N ms) for this query.
        """
        query = _clean_query(query)
        if match_count < 1:
            raise InputError("match_count must be at least 1")
        budget_setting = check_budget_ms(
            self.settings.rerank_budget_ms if rerank_budget_ms is None else rerank_budget_ms
        )
        use_rerank = self.settings.use_reranking if rerank is None else rerank
        embedding, model, search_mode = await self._embed_query(query)
        wanted = max(match_count, self.settings.rerank_top_n) if use_rerank else match_count
        hits = await self._hits(query, embedding, model, wanted, source_id, library, version, return_mode, match_count)
        reranking = _Reranking(hits, None if use_rerank else "disabled")
        if use_rerank and hits:
            reranking = await self._rerank(query, hits, budget_setting)
        hits = reranking.hits
        reranked = reranking.reranked > 0
        results: list[ChunkResult | PageResult]
        if return_mode == "pages":
            groups = group_hits_by_page(hits)[:match_count]
            pages = await self.store.get_pages([group.page_id for group in groups])
            by_id = {page["page_id"]: page for page in pages}
            results = [PageResult.from_page(by_id[g.page_id], g.hits) for g in groups if g.page_id in by_id]
        else:
            results = [ChunkResult.from_hit(hit) for hit in hits[:match_count]]
        return QueryResponse(
            query=query,
            source=source_id,
            match_count=match_count,
            return_mode=return_mode,
            search_mode=search_mode,
            reranking_applied=reranked,
            rerank_skipped=reranking.skipped,
            rerank_candidates=reranking.candidates,
            reranked_count=reranking.reranked,
            rerank_budget_ms=reranking.budget_ms,
            rerank_ms=reranking.elapsed_ms,
            embedding_model=model,
            reranker_model=self.ml.reranker_model if reranked else None,
            results=results,
            total_found=len(results),
        )

    async def _hits(
        self,
        query: str,
        embedding: list[float] | None,
        model: str | None,
        wanted: int,
        source_id: str | None,
        library: str | None,
        version: str | None,
        return_mode: ReturnMode,
        match_count: int,
    ) -> list[SearchHit]:
        """The fused chunks of a query, best first. For pages, as many as it takes to fill `match_count`
        pages: one long page can hold every one of the top chunks, so while the chunks found name
        fewer pages and more exist, the search is repeated for PAGE_FILL_FACTOR times as many."""
        while True:
            options = self._options(wanted, source_id, library, version)
            hits = await self.store.hybrid_search(query, embedding, model, **options)
            if return_mode != "pages" or len(hits) < wanted or wanted >= MAX_FUSED_HITS:
                return hits
            if len({hit.page_id for hit in hits}) >= match_count:
                return hits
            wanted = min(wanted * PAGE_FILL_FACTOR, MAX_FUSED_HITS)

    async def code_examples(
        self,
        query: str,
        *,
        source_id: str | None = None,
        match_count: int = 5,
        library: str | None = None,
        version: str | None = None,
    ) -> CodeExamplesResponse:
        """Code examples whose code or surrounding text match the query (library / version: as query())."""
        query = _clean_query(query)
        embedding, model, search_mode = await self._embed_query(query)
        options = self._options(match_count, source_id, library, version)
        hits = await self.store.search_code_examples(query, embedding, model, **options)
        results = [CodeExampleResult.from_hit(hit) for hit in hits]
        return CodeExamplesResponse(
            query=query,
            source=source_id,
            match_count=match_count,
            search_mode=search_mode,
            results=results,
            total_found=len(results),
        )

    def _options(
        self, match_count: int, source_id: str | None, library: str | None, version: str | None
    ) -> SearchOptions:
        """RRF_K, and SEARCH_CANDIDATES from each side (never fewer than the results asked for)."""
        return SearchOptions(
            match_count=match_count,
            source_id=source_id,
            rrf_k=self.settings.rrf_k,
            candidates=max(self.settings.search_candidates, match_count),
            library=clean_label(library),
            version=clean_label(version),
        )

    async def _embed_query(self, query: str) -> tuple[list[float] | None, str | None, SearchMode]:
        """The query vector, its model and the search mode: full_text without an embedder (no ML env),
        full_text_fallback when the embedder failed (to load, to answer this query, a remote server)."""
        if not self.ml.embedder_ready:
            return None, None, "full_text_fallback" if self.ml.embedder_state == "failed" else "full_text"
        try:
            [vector] = await self.ml.embed([query])
        except Busy:
            raise
        except (Unavailable, MLError, RemoteModelError) as exc:
            log.warning("query embedding failed, answering with full text: %s", exc)
            return None, None, "full_text_fallback"
        return vector, self.ml.embedding_model, "hybrid"

    async def _rerank(self, query: str, hits: list[SearchHit], budget_setting: int) -> _Reranking:
        """Rerank the top RERANK_TOP_N fused hits, in fused order as far as the budget goes: the
        reranked ones first by score, the rest (and the hits below the top N) in fused order."""
        skipped = await self._wait_for_reranker()
        if skipped is not None:
            return _Reranking(hits, skipped)
        head = hits[: self.settings.rerank_top_n]
        budget_ms = resolve_budget_ms(budget_setting, self.ml.device)
        try:
            run = await self._reranker.rerank(query, [h.content for h in head], budget_ms)
        except Busy:
            raise
        except (Unavailable, MLError, RemoteModelError) as exc:
            log.warning("reranking failed, keeping fused order: %s", exc)
            return _Reranking(hits, "error", candidates=len(head), budget_ms=budget_ms)
        reranked = hits[: len(run.scores)]
        for hit, score in zip(reranked, run.scores, strict=True):
            hit.rerank_score = float(score)
        reranked.sort(key=lambda h: h.rerank_score or 0.0, reverse=True)
        return _Reranking(
            reranked + hits[len(run.scores) :],
            None if run.scores else "budget",
            candidates=len(head),
            reranked=len(run.scores),
            budget_ms=budget_ms,
            elapsed_ms=round(run.elapsed_ms, 1),
        )

    async def _wait_for_reranker(self) -> RerankSkipped | None:
        """None once the reranker is ready, waiting up to RERANK_LOAD_WAIT_S for one that is loading; else why not."""
        budget = self.settings.rerank_load_wait_s
        if _why_not_reranked(self.ml) == "loading":
            log.info("a query waits up to %s s for the reranker to load", budget)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ml.reranker_settled(), budget)
        skipped = _why_not_reranked(self.ml)
        if skipped == "loading":
            log.warning(
                "the reranker is still loading after %s s (RERANK_LOAD_WAIT_S): answering in fused order", budget
            )
        return skipped


def _why_not_reranked(ml: SearchModels) -> RerankSkipped | None:
    """None when the reranker can rerank now, else the reason its state gives."""
    if ml.reranker_ready:
        return None
    return _SKIPPED_BECAUSE.get(ml.reranker_state, "unavailable")


def _clean_query(query: str) -> str:
    """Trim and bound the query text; an empty query is a client error."""
    query = query.strip()
    if not query:
        raise InputError("query must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"query is longer than {MAX_QUERY_CHARS} characters")
    return query
