"""What the catalog answers, as typed models: the service returns them, the API and MCP publish them.

Field names follow Archon v1 where it had the thing (`source_id`, `title`, `url`, `id` of a page
in a listing, `full_content`), so its clients read these answers unchanged.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from ragserver.domain import public_source_metadata

NextOffset = Field(description="The offset to ask for next; null when this is the end")


class SourceSummary(BaseModel):
    """A source with the counts of its active generation and the state of its last run."""

    # the store hands rows over as mappings or objects; either is read by attribute
    model_config = ConfigDict(from_attributes=True)

    source_id: str
    title: str
    origin: str = Field(description="The crawled URL or the uploaded file's name")
    knowledge_type: str
    tags: list[str]
    metadata: dict[str, JsonValue]
    library: str | None = Field(default=None, description="The library the source documents, if labelled")
    version: str | None = Field(default=None, description="The library version the source documents, if labelled")
    page_count: int
    chunk_count: int
    code_example_count: int
    active_run_id: int | None = Field(description="The generation searches read")
    partial: bool = Field(
        default=False,
        description="The content is a first crawl still running, or one stopped before it completed "
        "(what it stored is searchable; a refresh completes it)",
    )
    last_run_id: int | None
    last_run_kind: str | None
    last_run_status: str | None
    last_run_error: str | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @field_validator("metadata")
    @classmethod
    def _secrets_masked(cls, metadata: dict[str, JsonValue]) -> dict[str, JsonValue]:
        """Every answer that shows a source goes through here: its crawl's header values stay on the server."""
        return public_source_metadata(metadata)


class PageSummary(BaseModel):
    """One page of a source's active generation, without its text."""

    id: int = Field(description="Page id (the same as page_id; Archon clients read `id`)")
    page_id: int
    url: str
    title: str
    section_title: str = Field(description="The page's first heading, else its title")
    word_count: int
    char_count: int
    chunk_count: int


class PageListing(BaseModel):
    """One window of a source's pages in URL order; ask again from `next_offset` for more."""

    source_id: str
    section: str | None = Field(description="The section filter applied (null: every page)")
    pages: list[PageSummary]
    total: int = Field(description="Pages of the source matching the section filter")
    offset: int
    limit: int
    next_offset: int | None = NextOffset


class CodeExampleSummary(BaseModel):
    """One code example of a source's active generation, with the page it was found on."""

    id: int = Field(description="Code example id")
    page_id: int
    url: str = Field(description="The page's URL (or the uploaded file's name)")
    title: str = Field(description="The page's title")
    language: str = Field(description="The fence's language tag; empty when it had none")
    content: str = Field(description="The code, whole")
    context: str = Field(description="The text around the code on its page")
    heading_path: list[str] = Field(description="The headings the code stands under")


class CodeExampleListing(BaseModel):
    """One window of a source's code examples, by page URL and then their order on the page."""

    source_id: str
    examples: list[CodeExampleSummary]
    total: int = Field(description="Code examples of the source's active generation")
    offset: int
    limit: int
    next_offset: int | None = NextOffset


class PageContent(BaseModel):
    """A slice of one page's markdown, cut at a paragraph or line break where one is near."""

    page_id: int
    source_id: str
    url: str
    title: str
    full_content: str = Field(description="The markdown from `offset`, up to max_chars characters")
    word_count: int = Field(description="Words of the whole page")
    char_count: int = Field(description="Characters of the whole page")
    offset: int = Field(description="Where this slice starts, in characters")
    next_offset: int | None = NextOffset
    truncated: bool = Field(description="The page goes on past this slice")
    metadata: dict[str, JsonValue]
