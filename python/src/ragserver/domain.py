"""Plain data passed between the services: documents in, chunks and hits out.

Kept free of I/O so every room (ingest, crawl, search, store) can share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """One page or file as markdown: what a parser or the crawler produces."""

    url: str
    title: str
    markdown: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """A piece of a document sized for the embedder; code fences are never split."""

    index: int
    content: str
    heading_path: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    embedding: list[float] | None = None


@dataclass
class CodeExample:
    """A long fenced code block kept with the text around it."""

    index: int
    code: str
    language: str
    context: str
    heading_path: list[str] = field(default_factory=list)


@dataclass
class SourceInfo:
    """What a caller says about a source when ingesting it."""

    source_id: str
    title: str
    origin: str
    knowledge_type: str = "technical"
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchHit:
    """One search result row: a chunk with its fused score and, when reranked, its rerank score."""

    chunk_id: int
    page_id: int
    source_id: str
    url: str
    title: str
    content: str
    heading_path: list[str]
    metadata: dict[str, Any]
    score: float
    vector_rank: int | None = None
    text_rank: int | None = None
    rerank_score: float | None = None
