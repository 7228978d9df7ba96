"""A STAND-IN for remote model servers (OpenAI, Ollama, Cohere, TEI), which cannot run here.

A real aiohttp server on 127.0.0.1, in a thread of its own, that answers in the response shapes of
those servers with real numbers: embeddings come from the test all-MiniLM-L6-v2 and rerank scores
are the cosine of the query's and the document's MiniLM vectors mapped to [0, 1], so searches
through it find what a local model would. Tests steer it:

- `flavour`: "openai" (data in reversed index order, as a server may send it) or "ollama" (Ollama's
  OpenAI-compatible /v1/embeddings: in order, without `object` fields); rerank answers are sorted by
  score, as Cohere and TEI sort them;
- `faults`: one fault per coming request, first in first out: "500", "401" (its error echoes the
  Authorization header, as a careless server's may), "timeout" (the answer
  never comes, until the stand-in stops; `holding` counts such requests), "not_json", "no_data",
  "wrong_count", "nan", "wrong_dimension"; "ok" answers as without a fault;
- `max_batch`: requests with more inputs get a 413;
- `down()` / `up()`: stop listening (connection refused) and listen again on the same port.

Every request is recorded (`requests`: path, body, Authorization header).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Embed = Callable[[list[str]], list[list[float]]]


@dataclass
class Seen:
    path: str
    body: Any
    authorization: str | None
    query: dict[str, str]


@dataclass
class ModelServerStandin:
    """Stand-in for OpenAI / Ollama `/v1/embeddings` and Cohere / TEI `/rerank` (see the module docstring)."""

    embed: Embed
    flavour: str = "openai"
    max_batch: int | None = None
    faults: deque[str] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)
    port: int = 0
    holding: int = 0  # "timeout" requests still held (aiohttp does not cancel a handler whose client left)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="model-server-standin", daemon=True)
        self._runner: web.AppRunner | None = None
        self._never = asyncio.Event()  # what a "timeout" request waits for: set only when stopping

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ModelServerStandin:
        self._thread.start()
        self.up()
        return self

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(30)

    def down(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(30)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._never.set)
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def inputs_per_request(self, path: str) -> list[int]:
        """How many texts (or documents) each request to `path` carried."""
        return [len(_inputs(seen.body)) for seen in self.requests if seen.path == path]

    async def _listen(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/rerank", self._rerank_cohere)
        app.router.add_post("/tei/rerank", self._rerank_tei)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _common(self, request: web.Request) -> tuple[Any, web.StreamResponse | None, str | None]:
        """The body, an early answer (a fault or a 413) if one is due, and the garbage fault to apply."""
        body = await request.json()
        self.requests.append(Seen(request.path, body, request.headers.get("Authorization"), dict(request.query)))
        fault = self.faults.popleft() if self.faults else None
        if fault == "timeout":
            self.holding += 1
            await self._never.wait()
            self.holding -= 1
            return body, web.Response(status=503), None
        if fault == "401":
            error = f"stand-in fault 401: bad key in {request.headers.get('Authorization')} for {request.path_qs}"
            return body, web.json_response({"error": error}, status=401), None
        if fault == "500":
            return body, web.json_response({"error": "stand-in fault 500"}, status=500), None
        if fault == "not_json":
            return body, web.Response(text="<html>gateway says hello</html>", content_type="text/html"), None
        if self.max_batch is not None and len(_inputs(body)) > self.max_batch:
            return body, web.json_response({"error": "payload too large"}, status=413), None
        return body, None, fault

    async def _vectors(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.get_running_loop().run_in_executor(None, self.embed, texts)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, early, garbage = await self._common(request)
        if early is not None:
            return early
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = await self._vectors(texts)
        if garbage == "wrong_count":
            vectors = vectors[:-1]
        if garbage == "nan":
            vectors[0][0] = math.nan
        if garbage == "wrong_dimension":
            vectors = [vector[:-1] for vector in vectors]
        if garbage == "no_data":
            return web.json_response({"embeddings": vectors})
        rows: list[dict[str, Any]] = [{"index": i, "embedding": v} for i, v in enumerate(vectors)]
        if self.flavour == "openai":
            rows = [{"object": "embedding", **row} for row in reversed(rows)]
        usage = {"prompt_tokens": sum(len(t) // 4 for t in texts), "total_tokens": sum(len(t) // 4 for t in texts)}
        answer: dict[str, Any] = {"data": rows, "model": body.get("model"), "usage": usage}
        if self.flavour == "openai":
            answer["object"] = "list"
        return web.Response(text=_json(answer), content_type="application/json")

    async def _scores(self, query: str, documents: list[str]) -> list[float]:
        [q, *docs] = await self._vectors([query, *documents])
        return [(1 + sum(a * b for a, b in zip(q, d, strict=True))) / 2 for d in docs]

    async def _rerank_cohere(self, request: web.Request) -> web.StreamResponse:
        body, early, garbage = await self._common(request)
        if early is not None:
            return early
        scores = await self._scores(body["query"], body["documents"])
        results = _ranked(scores, "relevance_score", garbage)
        return web.Response(text=_json({"id": "standin", "results": results}), content_type="application/json")

    async def _rerank_tei(self, request: web.Request) -> web.StreamResponse:
        body, early, garbage = await self._common(request)
        if early is not None:
            return early
        scores = await self._scores(body["query"], body["texts"])
        return web.Response(text=_json(_ranked(scores, "score", garbage)), content_type="application/json")


def _inputs(body: Any) -> list[Any]:
    for key in ("input", "documents", "texts"):
        if isinstance(body, dict) and isinstance(body.get(key), list):
            return list(body[key])
    return [body]


def _ranked(scores: list[float], key: str, garbage: str | None) -> list[dict[str, Any]]:
    """Rows sorted best first (as Cohere and TEI send them), spoiled as `garbage` says."""
    rows = sorted(({"index": i, key: s} for i, s in enumerate(scores)), key=lambda row: -row[key])
    if garbage == "wrong_count":
        rows = rows[:-1]
    if garbage == "nan":
        rows[0][key] = math.nan
    return rows


def _json(value: Any) -> str:
    """JSON that may hold NaN (the garbage a broken server sends); json.dumps writes it as `NaN`."""
    import json

    return json.dumps(value)
