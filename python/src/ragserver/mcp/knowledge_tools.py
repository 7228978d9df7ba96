"""The tools that read the knowledge base, with Archon v1's names and parameters.

Each tool is a thin call into a service the runtime built; the runtime is asked for its
services on every call, so a call during start-up is answered with a tool error saying the
database is not ready rather than failing the session.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field, StrictInt

from ragserver.catalog.service import DEFAULT_READ_CHARS, MAX_PAGE_LIMIT, MAX_READ_CHARS, MAX_URL_CHARS
from ragserver.domain import MAX_LABEL_CHARS
from ragserver.errors import InputError
from ragserver.mcp.errors import reported_as_tool_errors
from ragserver.mcp.results import (
    CodeSearchAnswer,
    FullPageAnswer,
    KnowledgeSearchAnswer,
    PagesAnswer,
    SourcesAnswer,
)
from ragserver.runtime import Runtime
from ragserver.search.service import MAX_QUERY_CHARS

READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)

Query = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="What to look for: a few focused keywords or a short question, e.g. 'pgvector hnsw index'",
    ),
]
SourceId = Annotated[
    str | None,
    Field(
        default=None,
        max_length=500,
        description="Only this source: a source_id from rag_get_available_sources (not a URL or a domain)",
    ),
]
Library = Annotated[
    str | None,
    Field(default=None, max_length=MAX_LABEL_CHARS, description="Only sources labelled with this library name"),
]
Version = Annotated[
    str | None,
    Field(default=None, max_length=MAX_LABEL_CHARS, description="Only sources labelled with this library version"),
]
MatchCount = Annotated[int, Field(ge=1, le=50, description="How many results (1-50)")]


def register_knowledge_tools(server: MCPServer, runtime: Runtime) -> None:
    """Add the five read tools of Archon v1 to `server`."""

    @server.tool(annotations=READS)
    @reported_as_tool_errors
    async def rag_get_available_sources(library: Library = None, version: Version = None) -> SourcesAnswer:
        """List the sources in the knowledge base (crawled sites and uploaded files).

        Call this first to learn what the knowledge base covers and to get the source_id values
        the other tools filter by. Each source has its title, origin (URL or file name), library
        and version labels when it has them, and counts of pages, chunks and code examples.
        """
        sources = await runtime.services.catalog.sources(library=library, version=version)
        return SourcesAnswer(sources=sources, count=len(sources))

    @server.tool(annotations=READS)
    @reported_as_tool_errors
    async def rag_search_knowledge_base(
        query: Query,
        source_id: SourceId = None,
        match_count: MatchCount = 5,
        return_mode: Annotated[
            Literal["pages", "chunks"],
            Field(description="pages: pages with a preview of their best match; chunks: the matching passages"),
        ] = "pages",
        library: Library = None,
        version: Version = None,
    ) -> KnowledgeSearchAnswer:
        """Search the documentation in the knowledge base (hybrid vector + full-text search, reranked).

        Use it before answering a question about a library, API or tool the knowledge base covers.
        "pages" (default) returns pages ranked by their best matching passage, each with a preview,
        page_id, url, title and heading path: read a whole page with rag_read_full_page(page_id).
        "chunks" returns the matching passages themselves. Cite results by url and title.
        `stages` says which search stages ran (full text only when no embedder is loaded; how many
        candidates the reranker scored within its time budget).
        """
        started = time.perf_counter()
        source_id = await _known_source(runtime, source_id)
        answer = await runtime.services.search.query(
            query,
            source_id=source_id,
            match_count=match_count,
            return_mode=return_mode,
            library=library,
            version=version,
        )
        return KnowledgeSearchAnswer.of(answer, (time.perf_counter() - started) * 1000)

    @server.tool(annotations=READS)
    @reported_as_tool_errors
    async def rag_search_code_examples(
        query: Query,
        source_id: SourceId = None,
        match_count: MatchCount = 5,
        library: Library = None,
        version: Version = None,
    ) -> CodeSearchAnswer:
        """Search the code examples taken from the documentation (long code blocks with the text around them).

        Use it when you need working code for an API: each result has the code, its language, the
        surrounding explanation, the heading path and the url and page_id of the page it is on.
        """
        started = time.perf_counter()
        source_id = await _known_source(runtime, source_id)
        answer = await runtime.services.search.code_examples(
            query, source_id=source_id, match_count=match_count, library=library, version=version
        )
        return CodeSearchAnswer(
            query=answer.query,
            source_id=answer.source,
            results=answer.results,
            total_found=answer.total_found,
            search_mode=answer.search_mode,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    @server.tool(annotations=READS)
    @reported_as_tool_errors
    async def rag_list_pages_for_source(
        source_id: Annotated[
            str, Field(min_length=1, max_length=500, description="A source_id from rag_get_available_sources")
        ],
        section: Annotated[
            str | None,
            Field(
                default=None,
                max_length=500,
                description="Only pages of this section: words of their title or heading, or a URL path prefix",
            ),
        ] = None,
        offset: Annotated[int, Field(ge=0, description="Skip this many pages (use next_offset to page)")] = 0,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE_LIMIT, description="Pages per call")] = 100,
    ) -> PagesAnswer:
        """List the pages of one source: page_id, url, title, section title and size of each.

        Use it to browse a source's structure or to find a page to read with rag_read_full_page.
        Long sources come in slices: call again with offset=next_offset until next_offset is null.
        """
        listing = await runtime.services.catalog.pages(source_id, section=section, offset=offset, limit=limit)
        return PagesAnswer(**listing.model_dump())

    @server.tool(annotations=READS)
    @reported_as_tool_errors
    async def rag_read_full_page(
        page_id: Annotated[
            StrictInt | Annotated[str, Field(max_length=20)] | None,
            Field(default=None, description="A page_id from a search result or a page listing"),
        ] = None,
        url: Annotated[
            str | None, Field(default=None, max_length=MAX_URL_CHARS, description="Or the page's URL")
        ] = None,
        offset: Annotated[int, Field(ge=0, description="Start at this character (use next_offset to page)")] = 0,
        max_chars: Annotated[
            int, Field(ge=1, le=MAX_READ_CHARS, description="Characters per call")
        ] = DEFAULT_READ_CHARS,
    ) -> FullPageAnswer:
        """Read a whole page of the knowledge base as markdown, by page_id or by url (page_id wins if both).

        Use it after a search when a preview is not enough. A long page comes in slices of at most
        max_chars: when truncated is true, call again with offset=next_offset.
        """
        number = _page_number(page_id)
        page = await runtime.services.catalog.read_page(
            page_id=number, url=None if number is not None else _blank_is_none(url), offset=offset, max_chars=max_chars
        )
        return FullPageAnswer(page=page)


async def _known_source(runtime: Runtime, source_id: str | None) -> str | None:
    """The source filter, None when blank (as Archon treats it); NotFound for one that names no source:
    an empty answer would read as "nothing relevant"."""
    source_id = _blank_is_none(source_id)
    if source_id is not None:
        await runtime.services.catalog.source(source_id)
    return source_id


def _blank_is_none(value: str | None) -> str | None:
    return (value or "").strip() or None


def _page_number(page_id: int | str | None) -> int | None:
    """A page id as the store knows it; clients may send the number as a string, or "" for none."""
    if page_id is None or isinstance(page_id, int):
        return page_id
    text = page_id.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise InputError(f"page_id must be the number of a page (from a search result), got {page_id!r}")
    return int(text)
