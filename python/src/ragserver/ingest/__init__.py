"""Ingestion: files, folders, uploads and crawled pages -> chunks -> embeddings -> the store."""

from ragserver.ingest.ports import EmbeddingModel, IngestStore, UploadStream
from ragserver.ingest.service import Documents, IngestService

__all__ = ["Documents", "EmbeddingModel", "IngestService", "IngestStore", "UploadStream"]
