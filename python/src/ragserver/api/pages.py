"""Pages of a source and one page's full text, with Archon v1's paths (thin routes over the catalog).

A listing gives each page's id, URL, title, first heading and size; a read gives its markdown in
slices (`offset`, `max_chars`, `next_offset`), so a client can page through a huge page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ragserver.api.deps import CatalogDep
from ragserver.api.handlers import error_responses
from ragserver.catalog.results import PageContent, PageListing
from ragserver.catalog.service import (
    DEFAULT_READ_CHARS,
    MAX_OFFSET,
    MAX_PAGE_ID,
    MAX_PAGE_LIMIT,
    MAX_READ_CHARS,
    MAX_SECTION_CHARS,
    MAX_URL_CHARS,
)
from ragserver.domain import NO_NUL_PATTERN

router = APIRouter(prefix="/api", tags=["pages"])

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Where to start, in characters")]
MaxChars = Annotated[int, Query(ge=1, le=MAX_READ_CHARS, description="The most characters to return")]


class PagesResponse(PageListing):
    success: bool = True


class PageResponse(PageContent):
    success: bool = True


@router.get("/pages", response_model=PagesResponse, responses=error_responses(400, 404))
async def list_pages(
    catalog: CatalogDep,
    source_id: Annotated[str, Query(min_length=1, max_length=500, pattern=NO_NUL_PATTERN)],
    section: Annotated[
        str | None,
        Query(
            max_length=MAX_SECTION_CHARS,
            pattern=NO_NUL_PATTERN,
            description="A URL or URL path prefix (https://..., /docs/...), else a part of the title or first heading",
        ),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Pages to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = 100,
) -> PagesResponse:
    """The source's pages in URL order, `total` in the section; 404 for an unknown source."""
    listing = await catalog.pages(source_id, section=section, offset=offset, limit=limit)
    return PagesResponse(**listing.model_dump())


# before /pages/{page_id}, which would read "by-url" as a page id
@router.get("/pages/by-url", response_model=PageResponse, responses=error_responses(400, 404))
async def read_page_by_url(
    catalog: CatalogDep,
    url: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_URL_CHARS,
            pattern=NO_NUL_PATTERN,
            description="Exact, or up to a trailing / or a #fragment",
        ),
    ],
    offset: Offset = 0,
    max_chars: MaxChars = DEFAULT_READ_CHARS,
) -> PageResponse:
    """One page's markdown by URL, from `offset`; 404 when no active page has it."""
    page = await catalog.read_page(url=url, offset=offset, max_chars=max_chars)
    return PageResponse(**page.model_dump())


@router.get("/pages/{page_id}", response_model=PageResponse, responses=error_responses(400, 404))
async def read_page(
    catalog: CatalogDep,
    page_id: Annotated[int, Path(ge=1, le=MAX_PAGE_ID)],
    offset: Offset = 0,
    max_chars: MaxChars = DEFAULT_READ_CHARS,
) -> PageResponse:
    """One page's markdown by id, from `offset`; 404 when it is not an active page."""
    page = await catalog.read_page(page_id=page_id, offset=offset, max_chars=max_chars)
    return PageResponse(**page.model_dump())
