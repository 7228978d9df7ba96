"""The tools that change the knowledge base or its operations (hidden under MCP_READ_ONLY).

A crawl runs for minutes, longer than a tool call should: `crawl_url` and `refresh_source`
start it and return its progress id at once; the model follows it with `get_progress` and may
end it with `stop_operation`. The crawl options are validated by `CrawlRequest`, the same rule
the HTTP API and the CLI apply.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from ragserver.crawl.request import MAX_DEPTH_LIMIT, MAX_PAGES_LIMIT, MAX_URL_CHARS, CrawlRequest
from ragserver.crawl.scope import ScopeName
from ragserver.crawl.service import source_id_for
from ragserver.mcp.errors import reported_as_tool_errors
from ragserver.mcp.results import OperationAnswer, OperationStarted, StopAnswer
from ragserver.progress import ProgressSnapshot
from ragserver.runtime import Runtime

# Tools that change something: MCP_READ_ONLY hides them (and refuses a call that names one).
WRITE_TOOLS = ("crawl_url", "refresh_source", "stop_operation")

ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
REPLACES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)
STOPS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WATCHES = ToolAnnotations(read_only_hint=True, open_world_hint=False)

ProgressId = Annotated[
    str, Field(min_length=1, max_length=100, description="The progress_id crawl_url or refresh_source returned")
]
Patterns = Annotated[
    list[str] | None,
    Field(default=None, max_length=50, description="URL globs (e.g. '*/docs/*') or /regex/ patterns"),
]


def register_operation_tools(server: MCPServer, runtime: Runtime, *, read_only: bool) -> None:
    """Add get_progress, and unless `read_only` the tools that start or stop operations."""

    @server.tool(annotations=WATCHES)
    @reported_as_tool_errors
    async def get_progress(progress_id: ProgressId) -> OperationAnswer:
        """The state of a crawl, upload or refresh: status, percent, current step, counts, and its result or error.

        status is one of starting, running, cancelling, completed, failed, cancelled. Poll every
        few seconds until it is completed, failed or cancelled; once completed, the source is
        searchable (result.source_id).
        """
        return OperationAnswer(operation=ProgressSnapshot.model_validate(await runtime.tracker.find(progress_id)))

    if read_only:
        return

    @server.tool(annotations=ADDS)
    @reported_as_tool_errors
    async def crawl_url(
        url: Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_URL_CHARS,
                description="Start URL: a docs page, a sitemap.xml, an llms.txt / llms-full.txt or a text file",
            ),
        ],
        max_depth: Annotated[int, Field(ge=0, le=MAX_DEPTH_LIMIT, description="Link depth from the start page")] = 2,
        max_pages: Annotated[
            int | None, Field(default=None, ge=1, le=MAX_PAGES_LIMIT, description="Page budget (server default)")
        ] = None,
        include_patterns: Patterns = None,
        exclude_patterns: Patterns = None,
        scope: Annotated[
            ScopeName | None,
            Field(default=None, description="subpages (under the start folder), hostname (default) or domain"),
        ] = None,
        headers: Annotated[
            dict[str, str] | None,
            Field(default=None, description="Request headers for private docs (e.g. Authorization); never shown"),
        ] = None,
        content_selector: Annotated[
            str | None, Field(default=None, max_length=500, description="CSS selector of the main content")
        ] = None,
        exclude_selectors: Annotated[
            list[str] | None, Field(default=None, max_length=50, description="CSS selectors of more chrome to cut")
        ] = None,
        keep_link_pages: Annotated[
            bool, Field(description="Also store index / table-of-contents pages (by default only followed)")
        ] = False,
        knowledge_type: Annotated[str, Field(min_length=1, max_length=50)] = "technical",
        tags: Annotated[list[str] | None, Field(default=None, max_length=50)] = None,
        extract_code_examples: bool = True,
        library: Annotated[str | None, Field(default=None, max_length=200, description="Library label")] = None,
        version: Annotated[str | None, Field(default=None, max_length=100, description="Version label")] = None,
    ) -> OperationStarted:
        """Crawl a documentation site into the knowledge base; returns at once with a progress_id.

        Crawling takes minutes: follow it with get_progress(progress_id) and stop it with
        stop_operation(progress_id). A new site's pages are searchable as they are stored; the same
        URL again replaces that source's content once the new crawl succeeds (its source_id stays
        the same). Label the source with library and version so searches can be filtered by them.
        """
        fields = {
            "url": url,
            "max_depth": max_depth,
            "max_pages": max_pages,
            "include_patterns": include_patterns,
            "exclude_patterns": exclude_patterns,
            "scope": scope,
            "headers": headers,
            "content_selector": content_selector,
            "exclude_selectors": exclude_selectors,
            "keep_link_pages": keep_link_pages,
            "knowledge_type": knowledge_type,
            "tags": tags,
            "extract_code_examples": extract_code_examples,
            "library": library,
            "version": version,
        }
        request = CrawlRequest.checked(**{name: value for name, value in fields.items() if value is not None})
        op = await runtime.services.crawl.start_crawl(request)
        return OperationStarted(
            progress_id=op.id, source_id=source_id_for(request.url), message=f"crawl of {request.url} started"
        )

    @server.tool(annotations=REPLACES)
    @reported_as_tool_errors
    async def refresh_source(
        source_id: Annotated[str, Field(min_length=1, max_length=500, description="A crawled source's source_id")],
    ) -> OperationStarted:
        """Crawl a source again with the options of its last crawl, to pick up changed documentation.

        Returns a progress_id at once (follow with get_progress). Unchanged pages are kept without
        re-embedding; searches answer from the current content until the refresh completes, and a
        failed refresh keeps it. The result counts unchanged, changed, new and removed pages.
        """
        op = await runtime.services.crawl.start_refresh(source_id)
        return OperationStarted(progress_id=op.id, source_id=source_id, message=f"refresh of {source_id} started")

    @server.tool(annotations=STOPS)
    @reported_as_tool_errors
    async def stop_operation(progress_id: ProgressId) -> StopAnswer:
        """Stop a running crawl, upload or refresh.

        A stopped refresh leaves the source as it was; a stopped first crawl keeps the pages it
        stored, marked partial (refresh_source completes it). The operation ends as cancelled at
        its next safe point; get_progress shows when.
        """
        cancelled = await runtime.tracker.stop(progress_id)
        message = "stop requested" if cancelled else "the operation had already ended"
        return StopAnswer(progress_id=progress_id, cancelled=cancelled, message=message)
