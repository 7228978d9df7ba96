"""Sources and uploads, with Archon v1's paths and JSON shapes.

The route hands the uploaded file to the ingest service, which reads it up to MAX_UPLOAD_MB (the
one place that rule is checked), parses and embeds in the background; the caller follows the
returned progressId.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from pydantic import BaseModel

from ragserver.api.deps import CatalogDep, IngestDep, StoreDep
from ragserver.api.handlers import error_responses
from ragserver.catalog.results import SourceSummary
from ragserver.domain import MAX_LABEL_CHARS, NO_NUL_PATTERN
from ragserver.errors import InputError

router = APIRouter(prefix="/api", tags=["knowledge"])

MAX_TAGS = 50
MAX_TAG_CHARS = 100
SOURCE_ID = Path(min_length=1, max_length=500)
LABEL_RULES = {"max_length": MAX_LABEL_CHARS, "pattern": NO_NUL_PATTERN}


class UploadResponse(BaseModel):
    success: bool
    progressId: str
    message: str
    filename: str


class SourcesResponse(BaseModel):
    success: bool
    sources: list[SourceSummary]
    count: int


class KnowledgeItemsResponse(BaseModel):
    items: list[SourceSummary]
    total: int
    page: int
    per_page: int


class DeleteResponse(BaseModel):
    success: bool
    message: str
    source_id: str


@router.post("/documents/upload", response_model=UploadResponse, responses=error_responses(415))
async def upload_document(
    ingest: IngestDep,
    file: Annotated[UploadFile, File(description="md, txt, html, pdf or jsonl")],
    tags: Annotated[str | None, Form(description="JSON list or comma-separated", max_length=10_000)] = None,
    knowledge_type: Annotated[str, Form(min_length=1, max_length=50)] = "technical",
    library: Annotated[str | None, Form(**LABEL_RULES, description="The library it documents")] = None,
    version: Annotated[str | None, Form(**LABEL_RULES, description="The version it documents")] = None,
) -> UploadResponse:
    """Start ingesting one file; progress under the returned progressId (poll or Socket.IO)."""
    filename = (file.filename or "").strip()
    if not filename:
        raise InputError("the uploaded file needs a filename")
    op = await ingest.start_upload(
        filename,
        file,
        parse_tags(tags),
        knowledge_type,
        content_type=file.content_type,
        library=library,
        version=version,
    )
    return UploadResponse(success=True, progressId=op.id, message="Document upload started", filename=filename)


@router.get("/rag/sources", response_model=SourcesResponse, responses=error_responses(400))
async def list_sources(
    catalog: CatalogDep,
    library: Annotated[str | None, Query(**LABEL_RULES, description="Only this library")] = None,
    version: Annotated[str | None, Query(**LABEL_RULES, description="Only this version")] = None,
) -> SourcesResponse:
    """Every source with its counts (Archon's /api/rag/sources), optionally of one library / version."""
    sources = await catalog.sources(library=library, version=version)
    return SourcesResponse(success=True, sources=sources, count=len(sources))


@router.get("/knowledge-items", response_model=KnowledgeItemsResponse)
async def knowledge_items(
    catalog: CatalogDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 20,
) -> KnowledgeItemsResponse:
    """One page of sources with page, chunk and code example counts."""
    items, total = await catalog.source_page(page=page, per_page=per_page)
    return KnowledgeItemsResponse(items=items, total=total, page=page, per_page=per_page)


@router.delete("/sources/{source_id}", response_model=DeleteResponse, responses=error_responses(404))
async def delete_source(store: StoreDep, source_id: Annotated[str, SOURCE_ID]) -> DeleteResponse:
    """Delete a source and everything stored for it; 404 when unknown."""
    await store.delete_source(source_id)
    return DeleteResponse(success=True, message=f"deleted source {source_id}", source_id=source_id)


def parse_tags(raw: str | None) -> list[str]:
    """Tags from a form field: a JSON list of strings or a comma-separated list."""
    if raw is None or not raw.strip():
        return []
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"tags: invalid JSON list ({exc.msg})") from exc
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InputError("tags: expected a JSON list of strings")
    else:
        values = text.split(",")
    tags = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_CHARS for t in tags):
        raise InputError(f"tags: at most {MAX_TAGS} tags of at most {MAX_TAG_CHARS} characters")
    return tags
