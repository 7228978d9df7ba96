"""What the crawl service needs from its collaborators, declared structurally.

The runtime passes the real Store (store/store.py) and IngestService (ingest/service.py); mypy
checks that they still provide what is declared here.
"""

from __future__ import annotations

from typing import Any, Protocol

from ragserver.domain import SourceInfo
from ragserver.ingest.service import Documents
from ragserver.progress import Operation, Result
from ragserver.store.store import PreviousPage


class CrawlStore(Protocol):
    """A stored source, read back to repeat its crawl, and what its last crawl stored (a refresh)."""

    async def get_source(self, source_id: str) -> dict[str, Any]: ...

    async def previous_pages(self, source_id: str) -> list[PreviousPage]: ...

    async def page_links(self, page_id: int) -> list[str]: ...


class DocumentSink(Protocol):
    """Where crawled pages go: one ingest run per crawl (IngestService.ingest_documents)."""

    async def ingest_documents(
        self,
        source: SourceInfo,
        documents: Documents,
        op: Operation,
        kind: str,
        *,
        total: int | None = None,
        progressive: bool = False,
    ) -> Result: ...
