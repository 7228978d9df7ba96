"""Answers: POST /api/rag/ask, whole JSON or server-sent events, over the answer service.

Streaming is asked for with `stream: true`, or with `Accept: text/event-stream` when `stream` is not
given. Retrieval runs and the LLM's stream is opened before the response starts, so an LLM that is not
configured, down or silent still answers as a plain 409/502/504 JSON error; once events flow, a failure
of the LLM is an `error` event, the last one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel, Field

from ragserver.answer import EVENT_NAMES, AnswerStream, AskResponse, Question
from ragserver.api.deps import AnswerDep
from ragserver.api.handlers import error_responses
from ragserver.api.rag import LibraryFilter, MatchCount, SourceFilter, VersionFilter
from ragserver.search.service import MAX_QUERY_CHARS

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/rag", tags=["rag"])

CLIENT_CLOSED_REQUEST = 499  # nginx's status for it: logged, never read
EVENT_STREAM = "text/event-stream"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of the events
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The whole answer, or (stream) events: references, delta..., then done or error",
        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
    }
}


class AskRequest(BaseModel):
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to answer")]
    source: SourceFilter = None
    match_count: MatchCount = 5
    library: LibraryFilter = None
    version: VersionFilter = None
    min_rerank_score: float | None = Field(
        default=None, ge=0, le=1, description="Reranked chunks below this are not given to the LLM; null: setting"
    )
    stream: bool | None = Field(
        default=None, description="true: server-sent events; null: events when Accept is text/event-stream"
    )


@router.post(
    "/ask",
    response_model=AskResponse,
    responses={**STREAM_DOC, **error_responses(409, 429, 502, 504)},
)
async def rag_ask(body: AskRequest, request: Request, answers: AnswerDep) -> Response | AskResponse:
    """Retrieve as /api/rag/query does, then an OpenAI-compatible LLM (LLM_URL) answers citing the chunks as [n]."""
    question = Question(
        text=body.question,
        source_id=body.source,
        match_count=body.match_count,
        library=body.library,
        version=body.version,
        min_rerank_score=body.min_rerank_score,
    )
    stream = body.stream if body.stream is not None else EVENT_STREAM in request.headers.get("accept", "")
    if not stream:
        return await _unless_the_client_leaves(request, answers.ask(question))
    opened = await answers.open_stream(question)
    return EventSourceResponse(_encoded(opened), headers=STREAM_HEADERS)


async def _unless_the_client_leaves(request: Request, answer: Awaitable[AskResponse]) -> Response | AskResponse:
    """The whole answer; or, once the client has closed the connection, the LLM request cancelled, so a
    caller that gave up does not keep a model generating for nobody (the response is never read)."""
    answering = asyncio.ensure_future(answer)
    leaving = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({answering, leaving}, return_when=asyncio.FIRST_COMPLETED)
        if not answering.done() and leaving.exception() is not None:  # leaving is done: it ended first
            await asyncio.wait({answering})  # the connection cannot be watched: the answer decides alone
    finally:
        leaving.cancel()
        if not answering.done():
            answering.cancel()
            await asyncio.wait({answering})  # its cleanup (the LLM connection closed) ends here
    if not answering.cancelled():
        return answering.result()
    log.info("the client left before its answer was ready; its LLM request was cancelled")
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _disconnect(request: Request) -> None:
    """Returns when the client has closed the connection (the body is read, so only that message is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _encoded(stream: AnswerStream) -> AsyncIterator[bytes]:
    """The stream's events on the wire: `event: <name>` and its JSON as `data:`."""
    try:
        async for event in stream.events():
            yield format_sse_event(data_str=event.model_dump_json(), event=EVENT_NAMES[type(event)])
    finally:
        await stream.aclose()
