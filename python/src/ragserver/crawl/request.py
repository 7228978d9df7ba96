"""A crawl as a caller describes it: the one validated shape for the API body, the CLI and the crawler.

Field names are Archon v1's. The limits live here, so the API's 422, the CLI's error and the
service's checks are the same rule. The options are stored in the source's metadata and read
back for a refresh, so a refresh repeats the same crawl.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from ragserver.crawl.headers import MAX_HEADERS, checked_headers
from ragserver.crawl.scope import DEFAULT_SCOPE, BadPattern, ScopeName, compile_pattern
from ragserver.domain import MAX_LABEL_CHARS, NO_NUL_PATTERN
from ragserver.errors import InputError
from ragserver.ingest.content import ContentRules, check_selector
from ragserver.ingest.html import CONVERSION

MAX_DEPTH_LIMIT = 10
MAX_PAGES_LIMIT = 100_000
MAX_PATTERNS = 50
MAX_URL_CHARS = 2048

Pattern = Annotated[str, Field(min_length=1, max_length=500)]
Selector = Annotated[str, Field(min_length=1, max_length=500)]
Tag = Annotated[str, Field(min_length=1, max_length=100)]
Label = Annotated[str | None, Field(min_length=1, max_length=MAX_LABEL_CHARS, pattern=NO_NUL_PATTERN)]


class CrawlRequest(BaseModel):
    """Start URL, budgets and URL patterns of one crawl, plus how its source is labelled."""

    url: str = Field(
        min_length=1, max_length=MAX_URL_CHARS, description="Start URL: a page, a sitemap, llms.txt or a text file"
    )
    knowledge_type: str = Field("technical", min_length=1, max_length=50)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    library: Label = Field(None, description="The library the site documents (searches and listings filter by it)")
    version: Label = Field(None, description="The version of that library the site documents")
    max_depth: int = Field(2, ge=0, le=MAX_DEPTH_LIMIT, description="Link depth from the start page (0 = it alone)")
    max_pages: int | None = Field(None, ge=1, le=MAX_PAGES_LIMIT, description="Page budget; default CRAWL_MAX_PAGES")
    scope: ScopeName = Field(
        DEFAULT_SCOPE,
        description="subpages: under the start URL's folder; hostname: its host; domain: its domain and subdomains",
    )
    include_patterns: list[Pattern] = Field(
        default_factory=list,
        max_length=MAX_PATTERNS,
        description="Visit only URLs matching one of these: a glob of the whole URL, or a /regex/ searched in it",
    )
    exclude_patterns: list[Pattern] = Field(
        default_factory=list, max_length=MAX_PATTERNS, description="Never visit URLs matching one of these (wins)"
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        description="Request headers sent to the crawled hosts (e.g. Authorization); never logged or returned",
    )
    content_selector: Selector | None = Field(
        None, description="CSS selector of the pages' main content (default: the usual docs layouts, then the body)"
    )
    exclude_selectors: list[Selector] = Field(
        default_factory=list, max_length=MAX_PATTERNS, description="CSS selectors of more chrome to cut from pages"
    )
    keep_link_pages: bool = Field(
        False, description="Store index, table-of-contents and sitemap pages too (by default only followed)"
    )
    extract_code_examples: bool = True

    @field_validator("url")
    @classmethod
    def _stripped(cls, url: str) -> str:
        """Surrounding blanks are a copy-paste accident, not part of the URL."""
        url = url.strip()
        if not url:
            raise ValueError("url is required")
        return url

    @field_validator("include_patterns", "exclude_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        """A /regex/ that does not compile is refused here, naming it, before anything is stored."""
        for pattern in patterns:
            try:
                compile_pattern(pattern)
            except BadPattern as exc:
                raise ValueError(str(exc)) from exc
        return patterns

    @field_validator("content_selector", "exclude_selectors")
    @classmethod
    def _selects(cls, selectors: str | list[str] | None) -> str | list[str] | None:
        """A selector lxml cannot compile is refused here (422), naming it, before the crawl starts."""
        for css in [selectors] if isinstance(selectors, str) else selectors or []:
            check_selector(css)
        return selectors

    @field_validator("headers")
    @classmethod
    def _sendable(cls, headers: dict[str, str]) -> dict[str, str]:
        """Header names and values that could split or reframe a request are refused (422), values unquoted."""
        return checked_headers(headers)

    @classmethod
    def checked(cls, **fields: object) -> CrawlRequest:
        """Validate fields that do not come through the API (CLI, a stored refresh): InputError (400) when bad."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in exc.errors())
            raise InputError(f"invalid crawl request: {problems}") from exc

    def content_rules(self) -> ContentRules:
        """Where this crawl's pages keep their content, for the page conversion."""
        return ContentRules(self.content_selector, tuple(self.exclude_selectors), self.keep_link_pages)

    def extraction(self) -> dict[str, Any]:
        """What decides the markdown a page yields: the content rules and the conversion's version.
        A refresh revalidates stored pages (304: kept as they are) only while it is the same."""
        return {
            "content_selector": self.content_selector,
            "exclude_selectors": list(self.exclude_selectors),
            "keep_link_pages": self.keep_link_pages,
            "conversion": CONVERSION,
        }

    def options(self) -> dict[str, Any]:
        """What the source's metadata keeps to repeat this crawl (its labels are kept on the source)."""
        return {
            **self.model_dump(exclude={"knowledge_type", "tags", "library", "version"}),
            "extraction": self.extraction(),
        }
