"""What a person does on the page, in steps several browser tests share (found by role and name)."""

from __future__ import annotations

import re

from playwright.sync_api import FilePayload, Locator, Page, expect


def search_box(page: Page) -> Locator:
    return page.get_by_role("searchbox", name=re.compile("Search"))


def operation_card(page: Page, name: str) -> Locator:
    """The operation card whose progress bar is named after `name` (a URL or a file name)."""
    bar = page.get_by_role("progressbar", name=f"Progress of {name}")
    return page.locator("article.operation").filter(has=bar)


def enter_api_key(page: Page, key: str) -> None:
    """Type a key into the open key dialog and save it."""
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("API key").fill(key)
    dialog.get_by_role("button", name="Save key").click()


def start_crawl(page: Page, url: str) -> Locator:
    """Start a crawl of `url` (depth 1) from the Add view; returns its operation card."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Add").click()
    crawl = page.get_by_role("form", name="Crawl a site")
    crawl.get_by_label("URL").fill(url)
    crawl.get_by_label("Max depth").fill("1")
    crawl.get_by_role("button", name="Start crawl").click()
    return operation_card(page, url)


def stop_operation(card: Locator, name: str) -> None:
    """Press the card's Stop and see the operation end as cancelled."""
    card.get_by_role("button", name=f"Stop {name}").click()
    expect(card).to_contain_text("cancelled")
    expect(card.get_by_role("button", name=f"Stop {name}")).to_be_hidden()


def crawl_watched_live(page: Page, url: str) -> str:
    """Start a crawl, see its count grow while it runs, press Stop; returns its progressId.

    The site answers slowly enough that the crawl is still running when Stop is pressed.
    """
    card = start_crawl(page, url)
    expect(card).to_contain_text(re.compile(r"pages crawled [1-9]"))
    crawled = re.search(r"pages crawled (\d+)", card.inner_text())
    assert crawled, card.inner_text()
    # a later snapshot arrived while the crawl runs: the count has grown (counts never shrink)
    expect(card).to_contain_text(re.compile(rf"pages crawled (?!{crawled[1]}\b)\d+"))
    stop_operation(card, url)
    progress_id = card.get_attribute("data-progress-id")
    assert progress_id
    return progress_id


def drop_file(dropzone: Locator, file: FilePayload) -> None:
    """Drop one file on `dropzone` as a drag from the desktop would: a drop event carrying it in a DataTransfer."""
    transfer = dropzone.page.evaluate_handle(
        """([name, type, bytes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
            return transfer;
        }""",
        [file["name"], file["mimeType"], list(file["buffer"])],
    )
    dropzone.dispatch_event("dragover", {"dataTransfer": transfer})
    dropzone.dispatch_event("drop", {"dataTransfer": transfer})
