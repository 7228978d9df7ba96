"""Operations from the page: an upload of a chosen and a dropped file, a crawl watched live (by the socket and by
polling) and stopped, a delete that asks first."""

from __future__ import annotations

import uuid

from conftest import WebPage
from page_actions import crawl_watched_live, drop_file, operation_card, stop_operation
from playwright.sync_api import FilePayload, expect
from seeding import api_client, knowledge_items, upload_markdown
from support.site_fixtures import FixtureSite

SOCKET_LIBRARY = "/assets/vendor/socket.io.esm.min.js"


def test_upload_of_a_chosen_and_a_dropped_file_shows_progress_and_the_new_sources(web: WebPage) -> None:
    marker = f"upl{uuid.uuid4().hex[:8]}"
    files: list[FilePayload] = [
        {
            "name": f"{marker}-{part}.md",
            "mimeType": "text/markdown",
            "buffer": f"# {marker} {part} notes\n\nThe {part} notes of {marker} say how pumps are oiled.\n".encode(),
        }
        for part in ("alpha", "beta")
    ]
    page = web.open("#/add")
    upload = page.get_by_role("form", name="Upload files")
    upload.get_by_label("Upload").set_input_files(files[0])
    drop_file(upload.locator(".dropzone"), files[1])  # the chosen and the dropped file go together
    for file in files:
        expect(upload).to_contain_text(file["name"])
    upload.get_by_role("button", name="Upload files").click()
    for file in files:
        card = operation_card(page, file["name"])
        expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
        expect(card).to_contain_text("completed")

    with api_client(web.base_url) as client:
        uploaded = [item for item in knowledge_items(client).values() if marker in item["title"]]
    assert len(uploaded) == 2, uploaded
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sources").click()
    table = page.get_by_role("table", name="Sources")
    for item in uploaded:
        expect(table.get_by_role("link", name=item["title"], exact=True)).to_be_visible()
    assert web.errors == []


def test_crawl_shows_live_progress_and_stop_cancels_it(web: WebPage, slow: FixtureSite) -> None:
    progress_id = crawl_watched_live(web.open(), slow.url("/"))
    with api_client(web.base_url) as client:
        state = client.get(f"/api/progress/{progress_id}").json()
    assert state["status"] == "cancelled", state
    assert web.errors == []


def test_a_crawl_running_when_the_page_opens_is_named_after_its_url_and_can_be_stopped(
    web: WebPage, slow: FixtureSite
) -> None:
    """Started by another client (the API), so the card comes from GET /api/progress/ and its snapshot's name."""
    url = slow.url("/")
    with api_client(web.base_url) as client:
        started = client.post("/api/knowledge-items/crawl", json={"url": url, "max_depth": 1})
        assert started.status_code == 200, started.text
        page = web.open("#/add")
        card = operation_card(page, url)
        expect(card.get_by_role("heading", name=url)).to_be_visible()
        stop_operation(card, url)
        assert client.get(f"/api/progress/{started.json()['progressId']}").json()["status"] == "cancelled"
    assert web.errors == []


def test_without_the_socket_library_a_crawl_is_polled_live_and_stop_cancels_it(web: WebPage, slow: FixtureSite) -> None:
    """The fallback path: the Socket.IO client does not load (the page's own request for it is refused)."""
    page = web.page
    page.route(f"**{SOCKET_LIBRARY}", lambda route: route.abort())
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    polled: list[str] = []
    page.on("request", lambda request: polled.append(request.url) if "/api/progress/" in request.url else None)

    progress_id = crawl_watched_live(web.open(), slow.url("/"))
    with api_client(web.base_url) as client:
        assert client.get(f"/api/progress/{progress_id}").json()["status"] == "cancelled"
    assert sockets == []
    assert sum(url.endswith(f"/api/progress/{progress_id}") for url in polled) >= 2, polled
    assert [error for error in web.errors if SOCKET_LIBRARY not in error] == [], web.errors  # only the refused library


def test_delete_asks_first_and_removes_the_source(web: WebPage) -> None:
    marker = f"del{uuid.uuid4().hex[:8]}"
    with api_client(web.base_url) as client:
        item = upload_markdown(client, f"{marker}.md", f"# {marker} to delete\n\nA source that {marker} removes.\n")
    title, source_id = item["title"], item["source_id"]
    page = web.open()
    delete = page.get_by_role("button", name=f"Delete {title}")
    dialog = page.locator("#confirm-dialog")

    delete.click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Delete {title}? This removes its pages, chunks and code examples.")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()
    with api_client(web.base_url) as client:
        assert source_id in knowledge_items(client)

    delete.click()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    delete.click()
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("link", name=title, exact=True)).to_have_count(0)
    with api_client(web.base_url) as client:
        assert source_id not in knowledge_items(client)
    assert web.errors == []


def test_a_refused_crawl_shows_the_apis_message(web: WebPage) -> None:
    url = "http://169.254.169.254/latest/meta-data/"
    with api_client(web.base_url) as client:
        refused = client.post("/api/knowledge-items/crawl", json={"url": url})
    assert refused.status_code == 400, refused.text
    page = web.open("#/add")
    crawl = page.get_by_role("form", name="Crawl a site")
    crawl.get_by_label("URL").fill(url)
    crawl.get_by_role("button", name="Start crawl").click()
    expect(crawl.get_by_role("alert")).to_have_text(refused.json()["message"])
    expect(page.get_by_role("progressbar", name=f"Progress of {url}")).to_have_count(0)
