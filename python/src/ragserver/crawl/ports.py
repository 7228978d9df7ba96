"""What the crawl service needs from its collaborators, declared structurally.

The runtime passes the real Store (store/store.py) and IngestService (ingest/service.py); mypy
checks that they still provide what is declared here.
"""

from __future__ import annotations

from typing import Any, Protocol

from ragserver.domain import SourceInfo
from ragserver.ingest.service import Documents
from ragserver.progress import Operation, Result


class CrawlStore(Protocol):
    """A stored source, read back to repeat its crawl."""

    async def get_source(self, source_id: str) -> dict[str, Any]: ...


class DocumentSink(Protocol):
    """Where crawled pages go: one ingest run per crawl (IngestService.ingest_documents)."""

    async def ingest_documents(
        self, source: SourceInfo, documents: Documents, op: Operation, kind: str, *, total: int | None = None
    ) -> Result: ...
