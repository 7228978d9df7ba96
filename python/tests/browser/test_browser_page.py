"""The page loads cleanly, finds a known document, works by keyboard alone and fits a phone."""

from __future__ import annotations

import re
import uuid
from typing import Any

from conftest import PHONE, OpenPage, WebPage
from page_actions import search_box
from playwright.sync_api import Page, expect
from seeding import api_client, upload_markdown

TAB_LIMIT = 40  # more Tab presses than the page has controls before the search box


def known_document(base_url: str) -> tuple[str, dict[str, Any]]:
    """Ingest a document with a word of its own; returns that word and its knowledge item."""
    marker = f"quux{uuid.uuid4().hex[:8]}"
    text = f"# The {marker} valve\n\nThe {marker} valve regulates steam pressure in old engines and pumps.\n"
    with api_client(base_url) as client:
        item = upload_markdown(client, f"{marker}-valve.md", text)
    return marker, item


def test_every_view_loads_without_console_or_page_errors(web: WebPage) -> None:
    _, item = known_document(web.base_url)
    page = web.open()
    expect(page.get_by_role("link", name=item["title"], exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="ragserver", level=1)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Database: ready")
    expect(page.get_by_role("table", name="Sources")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    for link, view in (("Add", "#view-add"), ("Search", "#view-search"), ("Sources", "#view-sources")):
        nav.get_by_role("link", name=link).click()
        expect(page.locator(view)).to_be_visible()
        expect(page.locator(f"{view} h2")).to_be_focused()
    assert web.errors == []


def test_search_finds_a_known_document(web: WebPage) -> None:
    marker, item = known_document(web.base_url)
    title = item["title"]
    page = web.open("#/search")
    search = page.get_by_role("search")
    # "in" is too common to mark, and "ump" only starts no word of the text ("pumps" keeps no mark)
    search_box(page).fill(f"{marker} valve in ump")
    # the test reranker has random weights: among every test's sources it may rank this one past the first ten
    search.get_by_label("Source").select_option(item["source_id"])
    search.get_by_role("button", name="Search").click()
    found = page.get_by_role("list", name="Results").locator("li.result").filter(has_text=title)
    expect(found.locator("mark", has_text=marker).first).to_be_visible()
    assert {text.lower() for text in found.first.locator("mark").all_inner_texts()} == {marker, "valve"}
    expect(found.first).to_contain_text(re.compile(r"fused \d\.\d{4}"))
    expect(found.first).to_contain_text(re.compile(r"rerank -?\d+\.\d{3}"))
    expect(page.locator("#search-summary")).to_contain_text(re.compile(r"\d+ results? · \w+"))

    search.get_by_role("radio", name="Pages").check()
    search.get_by_role("button", name="Search").click()
    page_result = page.get_by_role("list", name="Results").locator("li.result").filter(has_text=title)
    expect(page_result.first).to_contain_text(re.compile(r"\d+ matching chunks?"))
    expect(page_result.locator("mark", has_text=marker).first).to_be_visible()
    assert web.errors == []


def test_keyboard_alone_reaches_the_search_box_and_submits(web: WebPage) -> None:
    marker, _ = known_document(web.base_url)
    page = web.open("#/search")
    box = search_box(page)
    for _ in range(TAB_LIMIT):
        page.keyboard.press("Tab")
        if box.evaluate("element => element === document.activeElement"):
            break
    expect(box).to_be_focused()
    page.keyboard.type(f"{marker} valve")
    page.keyboard.press("Enter")
    expect(page.get_by_role("list", name="Results").locator("li.result").first).to_be_visible()
    expect(page.locator("#search-summary")).to_contain_text("results")


def test_phone_width_scrolls_no_view_sideways(open_page: OpenPage, open_server: str) -> None:
    marker, item = known_document(open_server)
    title = item["title"]
    web = open_page(open_server, viewport=PHONE)
    page = web.open()
    expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()
    views = {"#/sources": page.get_by_role("table", name="Sources"), "#/add": page.get_by_label("URL")}
    for route, content in views.items():
        web.open(route)
        expect(content).to_be_visible()
        assert sideways(page) == [], route
    web.open("#/search")
    search_box(page).fill(f"{marker} valve")
    page.keyboard.press("Enter")
    expect(page.get_by_role("list", name="Results").locator("li.result").first).to_be_visible()
    assert sideways(page) == [], "#/search with results"
    web.open(f"#/sources/{item['source_id']}")
    expect(page.get_by_role("heading", name=title, level=2)).to_be_visible()
    assert sideways(page) == [], "#/sources/<id>"
    assert web.errors == []


# The elements reaching past the window's right edge, when the document is wider than the window.
SIDEWAYS_JS = """() => document.documentElement.scrollWidth <= innerWidth ? [] :
  [...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > innerWidth + 1)
    .slice(0, 8).map(e => `${e.tagName.toLowerCase()}.${e.className} ends at ${e.getBoundingClientRect().right}`)"""


def sideways(page: Page) -> list[str]:
    """What makes the page scroll sideways (nothing when it fits the window)."""
    return list(page.evaluate(SIDEWAYS_JS))
