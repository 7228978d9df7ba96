"""The Ask view: a question answered over POST /api/rag/ask, streamed into the page, its citations linked.

The browser tier's servers have no LLM, so they show the API's 409. A streamed answer needs an LLM,
and none can run here: this module starts one more `ragserver serve` whose LLM_URL is the labelled
STAND-IN for OpenAI's chat-completions API (support.openai_chat_standin), run on its own event loop
in a thread because the browser tests are synchronous.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from conftest import PHONE, OpenPage, WebPage, served
from playwright.sync_api import Locator, Page, expect
from seeding import api_client, upload_markdown
from support.openai_chat_standin import MODEL, Behaviour, ChatStandin, chat_standin
from support.polling import poll_until

from ragserver.config import Settings

STANDIN_FIRST_SENTENCE = "The gadget stores vectors in Postgres"


@dataclasses.dataclass
class AskServer:
    """A server whose LLM is the stand-in, with one uploaded document to answer from."""

    base_url: str
    standin: ChatStandin
    filename: str
    source_title: str


@pytest.fixture(scope="module")
def threaded_standin() -> Iterator[ChatStandin]:
    """The chat-completions stand-in, served from a thread of its own until the module ends."""
    started: Future[tuple[ChatStandin, asyncio.AbstractEventLoop, asyncio.Event]] = Future()

    async def serve() -> None:
        stop = asyncio.Event()
        async with chat_standin() as standin:
            started.set_result((standin, asyncio.get_running_loop(), stop))
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    standin, loop, stop = started.result(timeout=30)
    yield standin
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def ask_server(web_settings: Settings, threaded_standin: ChatStandin) -> Iterator[AskServer]:
    settings = dataclasses.replace(
        web_settings,
        llm_url=threaded_standin.base_url,
        llm_model=MODEL,
        ask_min_rerank_score=0.0,  # the tiny test reranker's scores are random: keep every chunk
    )
    for base_url in served(settings):
        marker = f"zq{uuid.uuid4().hex[:10]}"
        filename = f"{marker}.md"
        text = f"# The {marker} gadget\n\n" + f"The {marker} gadget stores vectors in Postgres with pgvector. " * 30
        with api_client(base_url) as client:
            item = upload_markdown(client, filename, text)
        yield AskServer(base_url, threaded_standin, filename, item["title"])


@pytest.fixture
def standin(ask_server: AskServer) -> ChatStandin:
    """The stand-in, answering normally again for each test."""
    ask_server.standin.behaviour = Behaviour()
    return ask_server.standin


def ask(page: Page, question: str, source: str | None = None) -> Locator:
    """Ask from the Ask view; returns its form."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Ask").click()
    form = page.get_by_role("form", name="Ask")
    if source:
        form.get_by_label("Source").select_option(label=source)
    form.get_by_label("Ask a question").fill(question)
    form.get_by_role("button", name="Ask").click()
    return form


def test_without_an_llm_the_page_shows_the_apis_message(web: WebPage) -> None:
    page = web.open()
    ask(page, "How are vectors stored?")
    alert = page.locator("#view-ask").get_by_role("alert").filter(has_text="LLM_URL")
    expect(alert).to_contain_text("answering needs an LLM")
    expect(page.get_by_role("article", name="Answer")).to_be_hidden()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    # Chromium logs every 4xx response itself; nothing else may show up
    assert [error for error in web.errors if "status of 409" not in error] == [], web.errors


def test_a_streamed_answer_links_its_citations_to_the_references(
    open_page: OpenPage, ask_server: AskServer, standin: ChatStandin
) -> None:
    web = open_page(ask_server.base_url)
    page = web.open()
    ask(page, "How does the gadget store vectors?", source=ask_server.source_title)
    answer = page.get_by_role("article", name="Answer")
    expect(answer).to_contain_text(STANDIN_FIRST_SENTENCE)
    expect(page.locator("#ask-summary")).to_contain_text("passages cited")
    citation = answer.get_by_role("link", name="[1]").first
    expect(citation).to_have_attribute("href", "#ask-ref-1")
    reference = page.get_by_role("list", name="References").locator("#ask-ref-1")
    expect(reference).to_contain_text(ask_server.filename)
    expect(reference).to_contain_text("cited")
    citation.click()
    expect(reference).to_be_focused()
    assert page.evaluate("location.hash") == "#/ask", "following a citation leaves the view where it is"
    assert standin.requests[-1].body["stream"] is True
    assert web.errors == []


def test_stop_ends_the_answer_and_the_llm_request(
    open_page: OpenPage, ask_server: AskServer, standin: ChatStandin
) -> None:
    standin.behaviour = Behaviour(mode="hang_mid_stream")
    left = standin.left
    web = open_page(ask_server.base_url, viewport=PHONE)
    page = web.open()
    form = ask(page, "How does the gadget store vectors?")
    answer = page.get_by_role("article", name="Answer")
    expect(answer).to_contain_text("The gadget sto")  # the stand-in's first two pieces, then silence
    form.get_by_role("button", name="Stop").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#ask-summary")).to_have_text("Stopped.")
    expect(form.get_by_role("button", name="Stop")).to_be_hidden()
    expect(form.get_by_role("button", name="Ask")).to_be_focused()
    poll_until(lambda: standin.left, lambda n: n == left + 1, what="the server to let go of the LLM request")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll at 375 px"
    assert web.errors == []
