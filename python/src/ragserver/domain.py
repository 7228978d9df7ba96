"""Plain data passed between the services: documents in, chunks and hits out.

Kept free of I/O so every room (ingest, crawl, search, store) can share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

SECRET_MASK = "***"  # what answers show in place of a secret


@dataclass
class Document:
    """One page or file as markdown: what a parser or the crawler produces."""

    url: str
    title: str
    markdown: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # What a refresh compares a crawled page with: the HTTP validators of its fetch, a hash of its
    # title and markdown, and its links (followed again when the page answers 304 Not Modified).
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    links: list[str] = field(default_factory=list)
    #: the stored page this one is unchanged from: carried into the new run, not chunked or embedded again
    carried_from: int | None = None


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
    """One chunk found by hybrid search, with the scores of each stage that ranked it: the RRF
    score of its vector and full-text ranks, the cosine similarity of its vector to the query's
    (None when it was no vector candidate, or there was no query vector) and, when reranked, the
    reranker's score."""

    chunk_id: int
    page_id: int
    source_id: str
    url: str
    title: str
    content: str
    heading_path: list[str]
    metadata: dict[str, Any]
    fused_score: float
    similarity: float | None = None
    vector_rank: int | None = None
    text_rank: int | None = None
    rerank_score: float | None = None


@dataclass(frozen=True)
class CodeExampleHit:
    """One code example found by code-example search. Its vector rank and similarity are those of
    the best chunk of its page (examples have no vectors of their own); None as for SearchHit."""

    code_example_id: int
    page_id: int
    source_id: str
    url: str
    title: str
    code: str
    language: str
    context: str
    heading_path: list[str]
    fused_score: float
    similarity: float | None = None
    vector_rank: int | None = None
    text_rank: int | None = None


class SearchOptions(TypedDict):
    """What both searches take besides the query: how many results, from which source (None: all),
    the RRF constant (RRF_K) and how many candidates each side contributes (SEARCH_CANDIDATES);
    `library` and `version` (absent or None: any) keep the sources labelled so (case-insensitive)."""

    match_count: int
    source_id: str | None
    rrf_k: int
    candidates: int
    library: NotRequired[str | None]
    version: NotRequired[str | None]


#: The longest library or version label a source may carry.
MAX_LABEL_CHARS = 200
#: Text without NUL, which Postgres text cannot hold: request fields bound for the store say so in
#: their schema, so a NUL is refused as a malformed request (422) rather than as a bad value.
NO_NUL_PATTERN = r"^[^\x00]*$"


def clean_label(value: str | None) -> str | None:
    """A library or version label (or a filter by one) trimmed; None when blank."""
    return (value or "").strip() or None


def public_source_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A source's metadata as answers show it: the values of its crawl's request headers masked.

    The crawl options in `metadata["crawl"]` keep those headers (a token, a cookie) so a refresh
    can send them again; their names are shown, their values never leave the server.
    """
    crawl = metadata.get("crawl")
    if not isinstance(crawl, dict) or not crawl.get("headers"):
        return metadata
    headers = crawl["headers"]
    masked = {name: SECRET_MASK for name in headers} if isinstance(headers, dict) else SECRET_MASK
    return {**metadata, "crawl": {**crawl, "headers": masked}}


def source_labels(library: str | None, version: str | None) -> dict[str, str]:
    """The source metadata entries naming the library and version it documents (search and the
    catalog filter by them); blank ones are left out."""
    labels = {"library": clean_label(library), "version": clean_label(version)}
    return {key: value for key, value in labels.items() if value is not None}
