"""The catalog: what the knowledge base holds, so an assistant can browse it and read whole pages.

Search finds passages; the catalog answers the questions around it: which sources exist (and
which library and version each documents), which pages a source has, and the full text of one
page. Only the active generation of a source is ever read, as search does. A page is read in
slices cut at paragraph or line breaks, so a model can page through a huge one without ever
getting more than it asked for; the slices of one page put back together are the page exactly.
"""

from __future__ import annotations

from typing import Any

from ragserver.catalog.results import (
    CodeExampleListing,
    CodeExampleSummary,
    PageContent,
    PageListing,
    PageSummary,
    SourceSummary,
)
from ragserver.domain import MAX_LABEL_CHARS, clean_label
from ragserver.errors import InputError
from ragserver.store import Store
from ragserver.store.store import MAX_PER_PAGE, MAX_SQL_INT

#: The most pages one listing returns.
MAX_PAGE_LIMIT = MAX_PER_PAGE
#: The most code examples one listing returns (each is a whole block of code), and the default.
MAX_CODE_EXAMPLE_LIMIT = 200
DEFAULT_CODE_EXAMPLE_LIMIT = 50
MAX_OFFSET = MAX_SQL_INT
MAX_PAGE_ID = 2**63 - 1
#: The most characters one read returns, and the default.
MAX_READ_CHARS = 100_000
DEFAULT_READ_CHARS = 20_000
MAX_SECTION_CHARS = 500
MAX_URL_CHARS = 4096
SOURCES_BATCH = 200
# Breaks a slice may end at, best first; one is taken only in the slice's second half, so every
# slice but the last is at least half of max_chars long.
BREAKS = ("\n\n", "\n")


class CatalogService:
    """Sources, page listings and page reads over the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def sources(self, *, library: str | None = None, version: str | None = None) -> list[SourceSummary]:
        """Every source, newest first; `library` / `version` keep the sources labelled so
        (case-insensitive; None or blank: any)."""
        library, version = _label(library, "library"), _label(version, "version")
        sources: list[SourceSummary] = []
        page = 1
        while True:
            listing = await self.store.list_sources(page=page, per_page=SOURCES_BATCH, library=library, version=version)
            sources.extend(SourceSummary.model_validate(item) for item in listing["items"])
            if not listing["items"] or len(sources) >= listing["total"]:
                return sources
            page += 1

    async def source(self, source_id: str) -> SourceSummary:
        """One source; NotFound (404) when there is none by that id."""
        return SourceSummary.model_validate(await self.store.get_source(source_id))

    async def source_page(self, *, page: int, per_page: int) -> tuple[list[SourceSummary], int]:
        """One page of sources (newest first) and how many there are."""
        listing = await self.store.list_sources(page=page, per_page=per_page)
        return [SourceSummary.model_validate(item) for item in listing["items"]], listing["total"]

    async def pages(
        self, source_id: str, *, section: str | None = None, offset: int = 0, limit: int = 100
    ) -> PageListing:
        """A window of the source's active pages in URL order, `total` pages in the section.

        `section` (None or blank: every page), case-insensitive:
        - `https://...` / `http://...`: pages whose URL starts with it;
        - `/docs/guide`: pages whose URL path starts with it;
        - anything else: pages whose title or first heading contains it (the sections of an
          llms-full.txt are pages titled by their heading).

        NotFound for an unknown source; InputError for an offset outside 0..MAX_OFFSET or a limit
        outside 1..MAX_PAGE_LIMIT.
        """
        section = _section(section)
        rows = await self.store.list_pages(source_id, section=section, limit=limit, offset=offset)
        pages = [PageSummary(id=item["page_id"], **item) for item in rows["items"]]
        return PageListing(section=section, pages=pages, **_window(source_id, offset, limit, len(pages), rows["total"]))

    async def code_examples(
        self, source_id: str, *, offset: int = 0, limit: int = DEFAULT_CODE_EXAMPLE_LIMIT
    ) -> CodeExampleListing:
        """A window of the code examples of the source's active generation, by page URL and then as
        they stand on the page, `total` in all.

        NotFound for an unknown source; InputError for an offset outside 0..MAX_OFFSET or a limit
        outside 1..MAX_CODE_EXAMPLE_LIMIT.
        """
        if not 1 <= limit <= MAX_CODE_EXAMPLE_LIMIT:
            raise InputError(f"limit must be 1..{MAX_CODE_EXAMPLE_LIMIT}, got {limit}")
        rows = await self.store.list_code_examples(source_id, limit=limit, offset=offset)
        examples = [
            CodeExampleSummary(id=item["code_example_id"], content=item["code"], **item) for item in rows["items"]
        ]
        return CodeExampleListing(examples=examples, **_window(source_id, offset, limit, len(examples), rows["total"]))

    async def read_page(
        self,
        *,
        page_id: int | None = None,
        url: str | None = None,
        offset: int = 0,
        max_chars: int = DEFAULT_READ_CHARS,
    ) -> PageContent:
        """The markdown of one active page from `offset`, at most `max_chars` characters, cut at the
        last paragraph (else line) break of the slice's second half unless it reaches the end; read on
        from `next_offset`.

        By `url`: the exact URL first, else one that differs by a trailing slash or a #fragment.
        InputError unless exactly one of page_id / url is given, or for a bad offset / max_chars;
        NotFound when no active page matches.
        """
        if (page_id is None) == (url is None):
            raise InputError("give exactly one of page_id and url")
        if page_id is not None and not 1 <= page_id <= MAX_PAGE_ID:
            raise InputError(f"page_id must be 1..{MAX_PAGE_ID}, got {page_id}")
        if url is not None:
            url = url.strip()
            if not url or len(url) > MAX_URL_CHARS:
                raise InputError(f"url must be 1..{MAX_URL_CHARS} characters")
        if not 0 <= offset <= MAX_OFFSET:
            raise InputError(f"offset must be 0..{MAX_OFFSET}, got {offset}")
        if not 1 <= max_chars <= MAX_READ_CHARS:
            raise InputError(f"max_chars must be 1..{MAX_READ_CHARS}, got {max_chars}")
        row = await self.store.read_page(page_id=page_id, url=url, offset=offset, max_chars=max_chars)
        char_count = int(row["char_count"])
        if offset > char_count:
            raise InputError(f"offset {offset} is past the end of page {row['page_id']} ({char_count} characters)")
        content = _slice(row["content"], reaches_end=offset + len(row["content"]) >= char_count, max_chars=max_chars)
        end = offset + len(content)
        next_offset = end if end < char_count else None
        return PageContent(
            page_id=row["page_id"],
            source_id=row["source_id"],
            url=row["url"],
            title=row["title"],
            full_content=content,
            word_count=row["word_count"],
            char_count=char_count,
            offset=offset,
            next_offset=next_offset,
            truncated=next_offset is not None,
            metadata=row["metadata"],
        )


def _window(source_id: str, offset: int, limit: int, shown: int, total: int) -> dict[str, Any]:
    """The fields every listing of a source has: which window this is, and where the next one starts
    (None when this one holds the last items)."""
    end = offset + shown
    return {
        "source_id": source_id,
        "total": total,
        "offset": offset,
        "limit": limit,
        "next_offset": end if shown and end < total else None,
    }


def _slice(window: str, *, reaches_end: bool, max_chars: int) -> str:
    """The window, or (when the page goes on) its start up to the best break of its second half."""
    if reaches_end:
        return window
    for mark in BREAKS:
        cut = window.rfind(mark, max_chars // 2)
        if cut != -1:
            return window[: cut + len(mark)]
    return window


def _label(value: str | None, name: str) -> str | None:
    """A library or version filter: trimmed, None when blank."""
    label = clean_label(value)
    if label is not None and len(label) > MAX_LABEL_CHARS:
        raise InputError(f"{name} must be at most {MAX_LABEL_CHARS} characters")
    return label


def _section(value: str | None) -> str | None:
    """A section filter: trimmed, without a markdown heading's leading #s (Archon documents "# Core
    Concepts"), None when blank."""
    value = (value or "").strip()
    if value.startswith("#"):
        value = value.lstrip("#").strip()
    if len(value) > MAX_SECTION_CHARS:
        raise InputError(f"section must be at most {MAX_SECTION_CHARS} characters")
    return value or None
