"""Our error tree as MCP tool errors: a model reads the message and can correct its call.

A `ToolError` becomes a result with `isError` and the message as text; the session stays up.
Anything else the SDK reports as a crash (logged with its traceback, a generic message to the
client), so only errors that explain themselves pass through here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from ragserver.errors import Busy, InputError, NotFound, RagServerError, Unavailable

P = ParamSpec("P")
R = TypeVar("R")

# What a model should do about each kind of error, after the error's own message.
_ADVICE: tuple[tuple[type[RagServerError], str], ...] = (
    (
        NotFound,
        "Check the id: sources come from rag_get_available_sources, pages from rag_list_pages_for_source"
        " or a search, progress ids from crawl_url or refresh_source",
    ),
    (InputError, "Correct the arguments and call again"),
    (Busy, "The server is busy; retry in a few seconds"),
    (Unavailable, "The server is not ready yet; retry shortly"),
)


def tool_message(exc: RagServerError) -> str:
    """The error's own message plus what to do about it."""
    for kind, advice in _ADVICE:
        if isinstance(exc, kind):
            return f"{exc}. {advice}."
    return str(exc)


def reported_as_tool_errors(tool: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap a tool so our errors reach the caller as tool errors (the signature stays for the schema)."""

    @functools.wraps(tool)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await tool(*args, **kwargs)
        except RagServerError as exc:
            raise ToolError(tool_message(exc)) from exc

    return guarded
