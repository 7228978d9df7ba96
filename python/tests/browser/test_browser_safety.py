"""Crawled content is shown, never run: markup quoted by a page stays text, a javascript: link is no link."""

from __future__ import annotations

from browser_sites import PWNED_IMAGE, PWNED_LINK_TEXT, PWNED_SCRIPT, UNSAFE_TITLE
from conftest import WebPage
from playwright.sync_api import expect
from seeding import api_client, crawl
from support.site_fixtures import FixtureSite

SAFE_SCHEMES = "['http:', 'https:', 'mailto:']"


def test_crawled_markup_renders_inert(web: WebPage, unsafe: FixtureSite) -> None:
    with api_client(web.base_url) as client:
        item = crawl(client, unsafe.url("/"), max_depth=0)
        pages = client.get("/api/pages", params={"source_id": item["source_id"]}).json()["pages"]
        stored = client.get(f"/api/pages/{pages[0]['id']}").json()
    # the precondition that makes this test able to fail: the stored markdown holds the live markup
    assert PWNED_SCRIPT in stored["full_content"] and PWNED_IMAGE in stored["full_content"], stored["full_content"]
    assert "](javascript:" in stored["full_content"], stored["full_content"]

    page = web.open(f"#/sources/{item['source_id']}")
    page.get_by_role("list", name="Pages").get_by_text(UNSAFE_TITLE).first.click()
    article = page.get_by_role("article", name="Page content")
    expect(article).to_contain_text(PWNED_SCRIPT)
    expect(article).to_contain_text(PWNED_IMAGE)
    expect(article).to_contain_text(PWNED_LINK_TEXT)
    assert article.locator("script, img, [onerror]").count() == 0
    unsafe_links = f"[...document.links].filter(a => !{SAFE_SCHEMES}.includes(a.protocol)).map(a => a.href)"
    assert page.evaluate(unsafe_links) == []
    article.get_by_text(PWNED_LINK_TEXT).click()
    assert page.evaluate("window.__pwned") is None
    assert web.errors == []
