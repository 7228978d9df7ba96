"""A source's code examples in pages of a window (a thin route over the catalog), for the web page's browse view.

Search finds code examples by query; this lists all of one source's, so a person can look through
what an ingest kept. Only the active generation is listed, as everywhere else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ragserver.api.deps import CatalogDep
from ragserver.api.handlers import error_responses
from ragserver.catalog.results import CodeExampleListing
from ragserver.catalog.service import DEFAULT_CODE_EXAMPLE_LIMIT, MAX_CODE_EXAMPLE_LIMIT, MAX_OFFSET
from ragserver.domain import NO_NUL_PATTERN

router = APIRouter(prefix="/api", tags=["knowledge"])


class CodeExamplesResponse(CodeExampleListing):
    success: bool = True


@router.get(
    "/sources/{source_id}/code-examples", response_model=CodeExamplesResponse, responses=error_responses(400, 404)
)
async def list_code_examples(
    catalog: CatalogDep,
    source_id: Annotated[str, Path(min_length=1, max_length=500, pattern=NO_NUL_PATTERN)],
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Code examples to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_CODE_EXAMPLE_LIMIT)] = DEFAULT_CODE_EXAMPLE_LIMIT,
) -> CodeExamplesResponse:
    """The source's code examples by page URL, then as they stand on the page; 404 for an unknown source."""
    listing = await catalog.code_examples(source_id, offset=offset, limit=limit)
    return CodeExamplesResponse(**listing.model_dump())
