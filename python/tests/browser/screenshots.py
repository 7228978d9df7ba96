"""The README's screenshots of the web page, taken by the browser tier's Chromium on a live server.

Not part of any tier (the name is not test_*.py); run it by naming it, from python/:

    python -m pytest -q -p no:cacheprovider tests/browser/screenshots.py

It fills a fresh server with a crawled documentation site and two uploads, then writes PNGs of the
main views at 1280 px (sources, a browsed page, search results, a crawl running in Add) and the
sources at 375 px into docs/screenshots/ at the repository root (each under 300 KB).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PHONE, OpenPage
from page_actions import search_box, start_crawl, stop_operation
from playwright.sync_api import Page, expect
from seeding import api_client, crawl, upload_markdown
from support.doc_sites import doc_site
from support.site_fixtures import FixtureSite

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
MAX_PNG_BYTES = 300_000

UPLOADS = {
    "pump-maintenance.md": "# Pump maintenance\n\n## Oiling\n\nOil the pump bearings every 200 hours of running.\n"
    "Use the light oil the manual names, never grease.\n\n```bash\npumpctl oil --bearing all\n```\n",
    "valve-handbook.md": "# Valve handbook\n\n## Pressure\n\nThe relief valve opens at 8 bar and closes again at 7.\n"
    "Check its seat when the pump hums at rest.\n",
}


def shoot(page: Page, name: str, *, full_page: bool = False) -> None:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size < MAX_PNG_BYTES, f"{path} is {path.stat().st_size} bytes"


@pytest.mark.parametrize("browser_engine", ["chromium"])
def test_readme_screenshots(open_page: OpenPage, open_server: str, slow: FixtureSite) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with doc_site("sphinx") as docs, api_client(open_server) as client:
        site = crawl(client, docs.url("/"), max_depth=2, library="widgets", version="1.0", tags=["docs"])
        for filename, text in UPLOADS.items():
            upload_markdown(client, filename, text)

    web = open_page(open_server)
    page = web.open()
    expect(page.get_by_role("link", name=site["title"], exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Reranker")
    shoot(page, "sources")

    page = web.open(f"#/sources/{site['source_id']}")
    page.get_by_role("list", name="Pages").get_by_text("Installing widgets").first.click()
    expect(page.get_by_role("article", name="Page content")).to_contain_text("marmalade")
    shoot(page, "browse")

    page = web.open("#/search")
    search_box(page).fill("widget settings")
    page.keyboard.press("Enter")
    expect(page.get_by_role("list", name="Results").locator("li.result").first).to_be_visible()
    shoot(page, "search")

    phone = open_page(open_server, viewport=PHONE).open()
    expect(phone.get_by_role("link", name=site["title"], exact=True)).to_be_visible()
    shoot(phone, "sources-phone")

    card = start_crawl(page, slow.url("/"))
    expect(card).to_contain_text("pages crawled")
    shoot(page, "add-crawl", full_page=True)
    stop_operation(card, slow.url("/"))
