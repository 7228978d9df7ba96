"""What the search service uses of the store and of the ML service, declared as Protocols.

SearchService depends on these rather than on the concrete classes, so it names exactly the
calls it makes; ragserver.store.Store and ragserver.ml.MLService satisfy them.
"""

from __future__ import annotations

from typing import Any, Protocol, Unpack

from ragserver.domain import CodeExampleHit, SearchHit, SearchOptions


class SearchStore(Protocol):
    """The store's retrieval calls."""

    async def hybrid_search(
        self, query: str, embedding: list[float] | None, model: str | None, **options: Unpack[SearchOptions]
    ) -> list[SearchHit]: ...

    async def search_code_examples(
        self, query: str, embedding: list[float] | None, model: str | None, **options: Unpack[SearchOptions]
    ) -> list[CodeExampleHit]: ...

    async def get_pages(self, page_ids: list[int]) -> list[dict[str, Any]]: ...


class SearchModels(Protocol):
    """The ML service's query-time calls and the states a search reports."""

    embedding_model: str
    reranker_model: str

    @property
    def embedder_ready(self) -> bool: ...

    @property
    def reranker_ready(self) -> bool: ...

    @property
    def embedder_state(self) -> str: ...

    @property
    def reranker_state(self) -> str: ...

    @property
    def device(self) -> str | None: ...

    @property
    def batch_tokens(self) -> int: ...

    async def reranker_settled(self) -> None: ...

    async def embed(self, texts: list[str], *, bulk: bool = False) -> list[list[float]]: ...

    async def rerank(self, query: str, documents: list[str]) -> list[float]: ...

    async def rerank_tokens(self, query: str, documents: list[str]) -> list[int]: ...
