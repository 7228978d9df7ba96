"""What ingestion needs from its collaborators, declared structurally.

The runtime passes the real Store (store/store.py) and MLService (ml/service.py); the service
only sees these Protocols, so it states what it depends on and mypy checks that the real
classes still provide it.
"""

from __future__ import annotations

from typing import Protocol

from ragserver.domain import Chunk, CodeExample, Document, SourceInfo
from ragserver.store.store import CarriedPage


class IngestStore(Protocol):
    """Generations of a source, the documents written into them, and vectors per model."""

    async def begin_run(self, source: SourceInfo, kind: str, *, progressive: bool = False) -> int: ...

    async def write_document(
        self,
        source_id: str,
        run_id: int,
        doc: Document,
        chunks: list[Chunk],
        code_examples: list[CodeExample],
        embedding_model: str | None,
    ) -> int: ...

    async def carry_page(self, source_id: str, run_id: int, doc: Document) -> CarriedPage | None: ...

    async def commit_run(self, source_id: str, run_id: int) -> dict[str, int]: ...

    async def fail_run(self, source_id: str, run_id: int, status: str, error: str) -> None: ...

    async def ensure_embedding_space(self, model: str, dimension: int) -> None: ...

    async def chunks_missing_embeddings(self, model: str, limit: int) -> list[tuple[int, str]]: ...

    async def set_embeddings(self, model: str, rows: list[tuple[int, list[float]]]) -> None: ...


class EmbeddingModel(Protocol):
    """The embedder side of the ML service: readiness, its tokenizer and its bulk lane."""

    @property
    def embedder_ready(self) -> bool: ...

    @property
    def embedding_model(self) -> str: ...

    @property
    def dimension(self) -> int | None: ...

    @property
    def max_seq_length(self) -> int | None: ...

    async def embed(self, texts: list[str], *, bulk: bool = False) -> list[list[float]]: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...


class UploadStream(Protocol):
    """An uploaded file being read (Starlette's UploadFile is one): read(n) returns b"" at the end."""

    async def read(self, size: int = -1) -> bytes: ...
