"""A STAND-IN for OpenAI's chat-completions API (no LLM can run here): a real aiohttp server on 127.0.0.1.

It speaks the shape OpenAI, Ollama, vLLM and LM Studio share at `/v1/chat/completions`: a whole
`chat.completion` body, or with `"stream": true` `data: {chat.completion.chunk}` lines ending with
`data: [DONE]`. It records every request (headers, query and JSON body) so a test can read the prompt it was
sent. What it answers is set per test through `behaviour`:

- `answer(body) -> str`: the text of the answer (default: cites [1] and [2]);
- `mode`: "ok"; "hang" (accepts the request, silent until the client leaves; `left` counts it);
  "status" (answers 500, its error echoing the Authorization header and the query string); "garbage"
  (an HTML page); "no_choices" (JSON of another shape);
  "no_stream" (a whole completion although a stream was asked for, as servers that cannot stream do);
  "hang_mid_stream" (two pieces, then silence until the client leaves; `left` counts those);
  "drop_mid_stream" (two pieces, then the connection closes); "error_mid_stream" (two pieces, then
  OpenAI's `data: {"error": ...}`); "end_mid_stream" (two pieces, then the body ends cleanly, without a
  finish reason or `[DONE]`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODEL = "standin-chat-1"
PIECE_CHARS = 7  # the streamed answer's pieces: short, so words and citations are cut across them


def cite_first_two(body: dict[str, Any]) -> str:
    return "The gadget stores vectors in Postgres [1]. It answers questions [2][1]."


@dataclass
class Behaviour:
    mode: str = "ok"
    answer: Callable[[dict[str, Any]], str] = cite_first_two


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]
    query: dict[str, str]

    @property
    def prompt(self) -> str:
        """All the messages' text, as the model would read it."""
        return "\n".join(message["content"] for message in self.body["messages"])


@dataclass
class ChatStandin:
    """The running stand-in: its /v1 base URL, what it received, and what it will answer."""

    base_url: str
    requests: list[Recorded] = field(default_factory=list)
    behaviour: Behaviour = field(default_factory=Behaviour)
    left: int = 0  # hanging answers (hang, hang_mid_stream) whose client closed the connection


def _chunk(text: str | None, finish_reason: str | None) -> bytes:
    delta = {"content": text} if text is not None else {}
    chunk = {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def _handle(standin: ChatStandin, request: web.Request) -> web.StreamResponse:
    body = await request.json()
    standin.requests.append(Recorded(headers=dict(request.headers), body=body, query=dict(request.query)))
    behaviour = standin.behaviour
    if behaviour.mode == "hang":
        return await _until_the_client_leaves(standin, request, web.Response(status=503))
    if behaviour.mode == "status":
        # echoes the key it got, as a careless server might: the client must mask it
        message = f"model overloaded (request had {request.headers.get('Authorization')} for {request.path_qs})"
        return web.json_response({"error": {"message": message, "type": "server_error"}}, status=500)
    if behaviour.mode == "garbage":
        return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
    if behaviour.mode == "no_choices":
        return web.json_response({"object": "list", "data": []})
    text = behaviour.answer(body)
    if not body.get("stream") or behaviour.mode == "no_stream":
        return web.json_response(
            {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    pieces = [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]
    for number, piece in enumerate(pieces):
        if number == 2 and behaviour.mode.endswith("_mid_stream"):
            return await _fail_mid_stream(standin, request, response)
        await response.write(_chunk(piece, None))
    await response.write(_chunk(None, "stop"))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _fail_mid_stream(standin: ChatStandin, request: web.Request, response: web.StreamResponse) -> Any:
    mode = standin.behaviour.mode
    if mode == "hang_mid_stream":
        return await _until_the_client_leaves(standin, request, response)
    if mode in ("error_mid_stream", "end_mid_stream"):
        if mode == "error_mid_stream":
            await response.write(b'data: {"error": {"message": "the model crashed", "type": "server_error"}}\n\n')
        await response.write_eof()
        return response
    assert request.transport is not None
    request.transport.close()  # drop_mid_stream: the connection ends in the middle of the chunked body
    return response


async def _until_the_client_leaves(standin: ChatStandin, request: web.Request, response: Any) -> Any:
    """Silence until the client closes the connection (aiohttp runs a handler on after that), counted in `left`."""
    transport = request.transport
    while transport is not None and not transport.is_closing():
        await asyncio.sleep(0.05)
    standin.left += 1
    return response


@contextlib.asynccontextmanager
async def chat_standin() -> AsyncIterator[ChatStandin]:
    """The stand-in on a free 127.0.0.1 port; `base_url` ends with /v1 as LLM_URL does."""
    app = web.Application()
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    standin = ChatStandin(base_url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        return await _handle(standin, request)

    app.router.add_post("/v1/chat/completions", handle)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    standin.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield standin
    finally:
        await runner.cleanup()
