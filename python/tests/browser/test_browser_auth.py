"""The API key: asked for once when the server has one, a wrong key refused in words, and carried by the socket."""

from __future__ import annotations

import json
import uuid

from conftest import WebPage
from page_actions import crawl_watched_live, enter_api_key
from playwright.sync_api import expect
from seeding import api_client, upload_markdown
from support.api_fixtures import API_KEY
from support.site_fixtures import FixtureSite


def test_key_prompt_refuses_a_wrong_key_and_the_right_one_loads_sources(keyed_web: WebPage) -> None:
    marker = f"key{uuid.uuid4().hex[:8]}"
    with api_client(keyed_web.base_url, API_KEY) as client:
        text = f"# {marker} behind a key\n\nOnly {marker} key holders see this.\n"
        item = upload_markdown(client, f"{marker}.md", text)
    page = keyed_web.open()
    dialog = page.locator("#key-dialog")
    expect(dialog.get_by_role("heading", name="API key")).to_be_visible()
    expect(dialog.get_by_role("alert")).to_have_text("This server needs an API key.")

    enter_api_key(page, "not-the-key")
    expect(dialog.get_by_role("alert")).to_have_text("The API key was refused.")
    expect(page.get_by_role("link", name=item["title"], exact=True)).to_have_count(0)

    enter_api_key(page, API_KEY)
    expect(dialog).to_be_hidden()
    expect(
        page.get_by_role("table", name="Sources").get_by_role("link", name=item["title"], exact=True)
    ).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('ragserver.apiKey')") == API_KEY

    page.reload()  # kept for the browser session: no second prompt
    expect(page.get_by_role("link", name=item["title"], exact=True)).to_be_visible()
    expect(dialog).to_be_hidden()


# Records the text frames each Socket.IO WebSocket of the page receives, in window.socketFrames. Through the page's
# own WebSocket rather than Playwright's websocket events, which its WebDriver BiDi (Firefox) side does not report.
RECORD_SOCKET_FRAMES = """(() => {
  const frames = (window.socketFrames = []);
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(url, ...rest) {
      super(url, ...rest);
      if (String(url).includes("/socket.io/")) {
        this.addEventListener("message", (event) => frames.push(typeof event.data === "string" ? event.data : ""));
      }
    }
  };
})();"""


def test_the_socket_carries_the_key_and_pushes_a_crawls_progress(keyed_web: WebPage, slow: FixtureSite) -> None:
    page = keyed_web.page
    page.add_init_script(RECORD_SOCKET_FRAMES)
    keyed_web.open()
    enter_api_key(page, API_KEY)
    expect(page.locator("#key-dialog")).to_be_hidden()

    progress_id = crawl_watched_live(page, slow.url("/"))
    pushed: list[str] = page.evaluate("window.socketFrames")
    progress_events = [frame for frame in pushed if frame.startswith('42["progress"')]
    ids = {json.loads(frame[2:])[1]["progressId"] for frame in progress_events}
    assert progress_id in ids, pushed[-5:]
    with api_client(keyed_web.base_url, API_KEY) as client:
        assert client.get(f"/api/progress/{progress_id}").json()["status"] == "cancelled"
