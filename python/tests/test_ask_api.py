"""POST /api/rag/ask through the app: real Postgres, the tiny real models, and a labelled STAND-IN for the
OpenAI chat-completions API (support.openai_chat_standin; no LLM can run here), whole and streamed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from support.api_fixtures import RunningApp, free_port, live_server, running_app
from support.openai_chat_standin import MODEL, Behaviour, ChatStandin, chat_standin
from support.polling import apoll_until, wait_operation

from ragserver.answer.prompt import NOT_IN_SOURCES
from ragserver.answer.service import NO_ANSWER
from ragserver.config import Settings

pytestmark = pytest.mark.slow

LLM_KEY = "llm-key-SECRET-5e81b0c2"
GATEWAY_QUERY = {"api-version": "2024-06-01", "key": "gateway-SECRET-77d0"}  # an Azure-style gateway's query string
LLM_TIMEOUT_S = 3.0  # a hanging stand-in turns into a 504 this soon; room enough for a loaded machine otherwise
STANDIN_ANSWER = "The gadget stores vectors in Postgres [1]. It answers questions [2][1]."


def document(marker: str) -> bytes:
    """A markdown page of three sections, each long enough to be a chunk of its own."""
    sections = {
        "Storage": f"The {marker} gadget stores vectors in Postgres with pgvector. " * 25,
        "Questions": f"The {marker} gadget answers questions with ranked passages and citations. " * 25,
        "Tuning": f"The {marker} gadget tunes recall with reciprocal rank fusion constants. " * 25,
    }
    body = "\n\n".join(f"## {title}\n\n{text}" for title, text in sections.items())
    return f"# The {marker} gadget\n\n{body}\n".encode()


@dataclasses.dataclass
class Asking:
    """The app with an LLM configured (the stand-in), and the source the questions are asked about."""

    app: RunningApp
    standin: ChatStandin
    source_id: str
    marker: str

    async def ask(self, **fields: Any) -> Any:
        fields.setdefault("question", f"How does the {self.marker} gadget store vectors?")
        fields.setdefault("source", self.source_id)
        return await self.app.client.post("/api/rag/ask", json=fields)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def asking(api_settings: Settings) -> AsyncIterator[Asking]:
    async with chat_standin() as standin:
        settings = dataclasses.replace(
            api_settings,
            llm_url=f"{standin.base_url}/?{'&'.join(f'{name}={value}' for name, value in GATEWAY_QUERY.items())}",
            llm_model=MODEL,
            llm_api_key=LLM_KEY,
            llm_timeout_s=LLM_TIMEOUT_S,
            ask_min_rerank_score=0.0,  # the tiny test reranker's scores are random: keep every chunk
        )
        async with running_app(settings) as app:
            marker = f"zq{uuid.uuid4().hex[:10]}"
            upload = await app.client.post("/api/documents/upload", files={"file": (f"{marker}.md", document(marker))})
            assert upload.status_code == 200, upload.text
            state = await wait_operation(app.client, upload.json()["progressId"])
            assert state["status"] == "completed", state
            sources = (await app.client.get("/api/rag/sources")).json()["sources"]
            [source] = [s for s in sources if marker in json.dumps(s)]
            yield Asking(app=app, standin=standin, source_id=source["source_id"], marker=marker)


@pytest.fixture
def standin(asking: Asking) -> ChatStandin:
    """The stand-in, answering normally again for each test."""
    asking.standin.behaviour = Behaviour()
    return asking.standin


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) of each server-sent event in a response body."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        if "data" in fields:
            events.append((fields.get("event", ["message"])[0], json.loads("\n".join(fields["data"]))))
    return events


async def test_the_answer_is_grounded_in_the_chunks_the_query_finds(asking: Asking, standin: ChatStandin) -> None:
    question = f"How does the {asking.marker} gadget store vectors?"
    response = await asking.ask(question=question, match_count=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["answered"] is True and body["answer"] == STANDIN_ANSWER
    assert body["model"] == MODEL and body["finish_reason"] == "stop" and body["usage"]["total_tokens"] == 120

    # the same retrieval as /api/rag/query, numbered from 1, best first; the three sections' chunks are
    # near twins, so a separate query may order them otherwise by a float's last bits: compared as sets
    query = await asking.app.client.post(
        "/api/rag/query", json={"query": question, "source": asking.source_id, "match_count": 3}
    )
    results = {r["id"]: r for r in query.json()["results"]}
    references = body["references"]
    assert len(references) == 3 and {r["chunk_id"] for r in references} == set(results)
    assert [r["number"] for r in references] == [1, 2, 3]
    scores = [r["rerank_score"] for r in references]
    assert scores == sorted(scores, reverse=True), scores
    for reference in references:
        result = results[reference["chunk_id"]]
        assert (reference["url"], reference["title"], reference["page_id"]) == (
            result["url"],
            result["title"],
            result["page_id"],
        )
    search = body["search"]
    assert search["search_mode"] == "hybrid" and search["reranking_applied"] is True
    assert search["total_found"] == search["relevant"] == search["used"] == 3

    # the prompt carries each chunk's text under its number, and the question
    [sent] = standin.requests[-1:]
    assert sent.body["model"] == MODEL and sent.body["stream"] is False
    for reference in references:
        assert f"[{reference['number']}] " in sent.prompt
        assert reference["content"].strip() in sent.prompt
    assert question in sent.prompt
    assert sent.headers["Authorization"] == f"Bearer {LLM_KEY}" and sent.query == GATEWAY_QUERY

    # [1] and [2] cited, in order of first citation; [3] not
    assert body["cited"] == [1, 2]
    assert [r["cited"] for r in references] == [True, True, False]
    assert LLM_KEY not in response.text


async def test_a_streamed_answer_is_references_then_deltas_then_done(asking: Asking, standin: ChatStandin) -> None:
    response = await asking.ask(stream=True)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "references" and names[-1] == "done", names
    assert set(names[1:-1]) == {"delta"} and len(names) > 4  # the stand-in streams the answer in pieces
    assert "".join(data["text"] for name, data in events if name == "delta") == STANDIN_ANSWER
    references, done = events[0][1]["references"], events[-1][1]
    assert done["cited"] == [1, 2] and done["answered"] is True and done["model"] == MODEL
    assert {r["chunk_id"] for r in references} and standin.requests[-1].body["stream"] is True
    assert all(r["content"].strip() in standin.requests[-1].prompt for r in references)


async def test_accept_event_stream_streams_unless_the_body_says_otherwise(asking: Asking, standin: ChatStandin) -> None:
    headers = {"Accept": "text/event-stream"}
    client = asking.app.client
    question = {"question": f"{asking.marker} gadget", "source": asking.source_id}
    streamed = await client.post("/api/rag/ask", json=question, headers=headers)
    assert streamed.headers["content-type"].startswith("text/event-stream"), streamed.text
    assert sse_events(streamed.text)[-1][0] == "done"
    whole = await client.post("/api/rag/ask", json={**question, "stream": False}, headers=headers)
    assert whole.headers["content-type"].startswith("application/json") and whole.json()["answer"] == STANDIN_ANSWER


async def test_nothing_found_is_said_without_asking_the_llm(asking: Asking, standin: ChatStandin) -> None:
    asked = len(standin.requests)
    response = await asking.ask(source="no-such-source")
    body = response.json()
    assert response.status_code == 200, body
    assert body["answered"] is False and body["no_answer_reason"] == "nothing_found"
    assert body["answer"] == NO_ANSWER["nothing_found"] and body["references"] == [] and body["cited"] == []
    assert body["model"] is None and len(standin.requests) == asked


async def test_nothing_relevant_is_said_without_asking_the_llm(asking: Asking, standin: ChatStandin) -> None:
    query = {"query": f"How does the {asking.marker} gadget store vectors?", "source": asking.source_id}
    found = await asking.app.client.post("/api/rag/query", json=query)
    scores = [r["rerank_score"] for r in found.json()["results"]]
    assert scores and all(score is not None and score < 1.0 for score in scores), scores
    asked = len(standin.requests)

    whole = (await asking.ask(min_rerank_score=1.0)).json()
    assert whole["answered"] is False and whole["no_answer_reason"] == "nothing_relevant", whole
    assert whole["answer"] == NO_ANSWER["nothing_relevant"] and whole["references"] == []
    assert whole["search"]["total_found"] == len(scores) and whole["search"]["relevant"] == 0

    events = sse_events((await asking.ask(min_rerank_score=1.0, stream=True)).text)
    assert [name for name, _ in events] == ["references", "delta", "done"]
    assert events[1][1]["text"] == NO_ANSWER["nothing_relevant"] and events[2][1]["answered"] is False
    assert len(standin.requests) == asked


async def test_a_model_that_finds_no_answer_in_the_sources_is_reported_honestly(
    asking: Asking, standin: ChatStandin
) -> None:
    standin.behaviour = Behaviour(answer=lambda body: f"{NOT_IN_SOURCES}\n")
    whole = (await asking.ask()).json()
    assert whole["answered"] is False and whole["no_answer_reason"] == "not_in_sources", whole
    assert whole["answer"] == NO_ANSWER["not_in_sources"] and whole["cited"] == [] and whole["references"]

    events = sse_events((await asking.ask(stream=True)).text)
    shown = "".join(data["text"] for name, data in events if name == "delta")
    assert shown == NO_ANSWER["not_in_sources"], events
    assert events[-1][0] == "done" and events[-1][1]["no_answer_reason"] == "not_in_sources"


async def test_a_reasoning_models_thinking_is_neither_shown_nor_cited(asking: Asking, standin: ChatStandin) -> None:
    standin.behaviour = Behaviour(answer=lambda body: "<think>Perhaps [3] says so?</think>\n\nIt uses Postgres [2].")
    whole = (await asking.ask()).json()
    assert whole["answer"] == "It uses Postgres [2]." and whole["cited"] == [2], whole

    events = sse_events((await asking.ask(stream=True)).text)
    shown = "".join(data["text"] for name, data in events if name == "delta")
    assert shown.strip() == "It uses Postgres [2]." and "think" not in shown, events
    assert events[-1][1]["cited"] == [2]


async def test_without_an_llm_asking_is_a_409_that_names_the_settings(api: RunningApp) -> None:
    for stream in (False, True):
        response = await api.client.post("/api/rag/ask", json={"question": "anything", "stream": stream})
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["success"] is False and body["error"] == "not_configured"
        assert "LLM_URL" in body["message"] and "LLM_MODEL" in body["message"]


async def test_an_llm_that_is_down_is_a_502(api_settings: Settings) -> None:
    port = free_port()
    url = f"http://ask:pw-SECRET-1b2c@127.0.0.1:{port}/v1"
    settings = dataclasses.replace(api_settings, llm_url=url, llm_model=MODEL)
    async with running_app(settings) as app:
        for stream in (False, True):
            response = await app.client.post("/api/rag/ask", json={"question": "gadget", "stream": stream})
            assert response.status_code == 502, response.text
            body = response.json()
            assert body["error"] == "llm_error" and "could not be reached" in body["message"]
            assert "pw-SECRET-1b2c" not in body["message"] and f"http://127.0.0.1:{port}/v1" in body["message"]


async def test_a_client_that_leaves_a_stream_lets_go_of_the_llm_request(api_settings: Settings) -> None:
    """Over a real socket (uvicorn): the LLM would stay silent far longer than the poll's deadline, so only
    the client's leaving can end the stand-in's request."""
    async with chat_standin() as standin:
        standin.behaviour = Behaviour(mode="hang_mid_stream")
        settings = dataclasses.replace(api_settings, llm_url=standin.base_url, llm_model=MODEL, llm_timeout_s=600.0)
        async with live_server(settings) as app:
            ask = {"question": "How are vectors stored?", "stream": True, "match_count": 1}
            async with app.client.stream("POST", "/api/rag/ask", json=ask) as response:
                assert response.status_code == 200
                deltas = 0
                async for line in response.aiter_lines():
                    deltas += line == "event: delta"
                    if deltas == 2:
                        break
            await _until_let_go(standin)


async def test_a_client_that_leaves_before_a_whole_answer_lets_go_of_the_llm_request(api_settings: Settings) -> None:
    """The same for an answer asked for whole: the server watches the connection while the LLM thinks."""
    async with chat_standin() as standin:
        standin.behaviour = Behaviour(mode="hang")
        settings = dataclasses.replace(api_settings, llm_url=standin.base_url, llm_model=MODEL, llm_timeout_s=600.0)
        async with live_server(settings) as app:
            ask = {"question": "How are vectors stored?", "stream": False, "match_count": 1}
            asking = asyncio.create_task(app.client.post("/api/rag/ask", json=ask))
            await apoll_until(lambda: _value(len(standin.requests)), lambda n: n == 1, what="the LLM to be asked")
            asking.cancel()  # httpx drops the connection of a cancelled request
            await asyncio.wait({asking})
            await _until_let_go(standin)


async def _until_let_go(standin: ChatStandin) -> None:
    left = await apoll_until(
        lambda: _value(standin.left), lambda n: n == 1, what="the LLM request to be let go", timeout=60
    )
    assert left == 1 and len(standin.requests) == 1


async def _value(value: int) -> int:
    return value


async def test_an_llm_error_answer_is_a_502_with_its_message_and_never_the_key(
    asking: Asking, standin: ChatStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """The stand-in echoes the Authorization header it got into its error body, as a careless server might."""
    standin.behaviour = Behaviour(mode="status")
    with caplog.at_level(logging.DEBUG):
        for stream in (False, True):
            response = await asking.ask(stream=stream)
            assert response.status_code == 502, response.text
            message = response.json()["message"]
            assert "HTTP 500" in message and "model overloaded" in message and "***" in message
            assert "/chat/completions?" in message, "the server echoed the query string"
            assert LLM_KEY not in response.text and GATEWAY_QUERY["key"] not in response.text
    assert "model overloaded" in caplog.text and LLM_KEY not in caplog.text


async def test_an_llm_that_hangs_is_a_504_after_the_configured_timeout(asking: Asking, standin: ChatStandin) -> None:
    standin.behaviour = Behaviour(mode="hang")
    for stream in (False, True):
        response = await asking.ask(stream=stream)
        assert response.status_code == 504, response.text
        body = response.json()
        assert body["error"] == "llm_timeout" and f"LLM_TIMEOUT_S={LLM_TIMEOUT_S:g}" in body["message"]


@pytest.mark.parametrize(
    ("mode", "error", "words"),
    [
        ("hang_mid_stream", "llm_timeout", "did not answer within"),
        ("drop_mid_stream", "llm_error", "failed"),
        ("error_mid_stream", "llm_error", "the model crashed"),
        ("end_mid_stream", "llm_error", "ended its stream before the answer was complete"),
    ],
)
async def test_an_llm_failing_mid_stream_ends_the_stream_with_an_error_event(
    asking: Asking, standin: ChatStandin, mode: str, error: str, words: str
) -> None:
    standin.behaviour = Behaviour(mode=mode)
    response = await asking.ask(stream=True)
    assert response.status_code == 200, response.text
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names == ["references", "delta", "delta", "error"], events
    assert events[-1][1]["error"] == error and words in events[-1][1]["message"]
    assert "".join(data["text"] for name, data in events[1:3]) == STANDIN_ANSWER[:14]


async def test_an_llm_that_streams_garbage_ends_the_stream_with_an_error_event(
    asking: Asking, standin: ChatStandin
) -> None:
    standin.behaviour = Behaviour(mode="garbage")  # an HTML page, no `data:` line in it
    response = await asking.ask(stream=True)
    assert response.status_code == 200, response.text
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["references", "error"], events
    assert events[-1][1]["error"] == "llm_error" and "before the answer was complete" in events[-1][1]["message"]


@pytest.mark.parametrize(
    "fields",
    [
        {"question": ""},
        {"question": "x" * 4001},
        {"question": "gadget", "match_count": 0},
        {"question": "gadget", "min_rerank_score": 1.5},
        {"question": "gadget", "stream": "sometimes"},
    ],
)
async def test_bad_questions_are_422s(asking: Asking, fields: dict[str, Any]) -> None:
    response = await asking.app.client.post("/api/rag/ask", json=fields)
    assert response.status_code == 422, response.text
    assert response.json()["success"] is False
