"""Browser mode (BROWSER_CDP_URL): a real Debian Chromium with remote debugging renders JavaScript pages.

Skipped when no `chromium` binary is installed (the slim image has none; `apt-get install chromium`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.polling import PollTimeout, poll_until
from support.site_fixtures import FixtureSite, Route, crawl, crawl_settings

from ragserver.errors import CrawlError

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium binary (apt-get install chromium)"),
]

START_TIMEOUT_S = 30
PIXEL = Route(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", content_type="image/gif")


@pytest.fixture(scope="module")
def cdp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A headless Chromium listening for CDP on 127.0.0.1 (port chosen by Chromium)."""
    profile = tmp_path_factory.mktemp("chromium")
    proc = subprocess.Popen(
        [
            "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    port_file = profile / "DevToolsActivePort"

    def devtools_port() -> str:
        """The port Chromium writes on the file's first line; "" until it has."""
        words = port_file.read_text().split() if port_file.exists() else []
        return words[0] if words else ""

    try:
        port = poll_until(
            devtools_port,
            lambda port: bool(port) or proc.poll() is not None,
            what="chromium's DevTools port",
            timeout=START_TIMEOUT_S,
        )
    except PollTimeout:
        port = ""
    if not port:
        proc.kill()
        pytest.skip("chromium did not open its DevTools port")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


async def test_browser_renders_javascript_and_guards_its_requests(cdp_url: str, tmp_path: Path) -> None:
    with FixtureSite({"/secret.gif": PIXEL}, host="127.0.0.2") as internal:
        script = (
            "document.getElementById('app').innerHTML = "
            "'<h1>Rendered by script</h1><p>Only a browser sees this text.</p><a href=\"/second.html\">next</a>';"
        )
        app_page = (
            "<html><head><title>JS app</title></head><body><div id='app'>loading</div>"
            f"<img src='/allowed.gif'><img src='{internal.url('/secret.gif')}'><script>{script}</script></body></html>"
        )
        routes = {
            "/": Route(app_page),
            "/allowed.gif": PIXEL,
            "/second.html": Route("<html><head><title>Second</title></head><body><p>Second page.</p></body></html>"),
        }
        with FixtureSite(routes) as site:
            plain, _ = await crawl(crawl_settings(tmp_path), site.url("/"))
            assert "Only a browser sees this text" not in plain[0].markdown
            assert len(plain) == 1  # the link exists only after the script ran

            settings = crawl_settings(tmp_path, browser_cdp_url=cdp_url, crawl_timeout_s=30)
            site.requests.clear()
            docs, _ = await crawl(settings, site.url("/"), headers={"X-Docs-Key": "browser-key-1"})
            # the crawl's header goes with the browser's requests too (the document, its images)
            assert {headers.get("X-Docs-Key") for _, headers in site.requests} == {"browser-key-1"}
            assert [d.url for d in docs] == [site.url("/"), site.url("/second.html")]
            assert "Only a browser sees this text" in docs[0].markdown
            assert site.hits["/allowed.gif"] >= 1  # the browser did load images...
        assert internal.hits["/secret.gif"] == 0  # ...but not from an address the guard refuses


async def test_unreachable_browser_is_a_clear_error(tmp_path: Path) -> None:
    with FixtureSite({"/": Route("<html><body><p>hello</p></body></html>")}) as site:
        settings = crawl_settings(tmp_path, browser_cdp_url="http://127.0.0.1:9", crawl_timeout_s=5)
        with pytest.raises(CrawlError, match="BROWSER_CDP_URL"):
            await crawl(settings, site.url("/"))
