"""The query path (embed, hybrid retrieval, rerank, pages) and the typed answers it gives.

service.py    SearchService: embed -> store.hybrid_search -> rerank (waiting for a loading reranker)
results.py    the answers as Pydantic models, Archon v1 field names plus where each score comes from
pages.py      ranked chunks grouped into ranked pages
contracts.py  what the service uses of the store and the ML service (Protocols)
"""

from ragserver.search.contracts import SearchModels, SearchStore
from ragserver.search.results import (
    ChunkResult,
    CodeExampleResult,
    CodeExamplesResponse,
    PageResult,
    QueryResponse,
    RerankSkipped,
)
from ragserver.search.service import SearchService

__all__ = [
    "ChunkResult",
    "CodeExampleResult",
    "CodeExamplesResponse",
    "PageResult",
    "QueryResponse",
    "RerankSkipped",
    "SearchModels",
    "SearchService",
    "SearchStore",
]
