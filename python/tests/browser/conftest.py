"""The browser tier: the built-in page in real headless Chromium and Firefox, driven by Playwright.

Two real `ragserver serve` processes on 127.0.0.1 share one embedded Postgres database with the
tiny real models: `open_server` without an API key and `keyed_server` with one. Each test gets
its own Playwright and browser: between its sync calls Playwright marks its own event loop as
running, which would stop pytest-asyncio from setting up or tearing down fixtures meanwhile.
Every test runs once in each engine: Debian's `chromium` and `firefox-esr` (the stock Firefox, over
WebDriver BiDi: Playwright's `moz-firefox` channel). An engine whose binary is missing skips its
tests, saying so, or fails them under RAGSERVER_REQUIRE_BROWSER=1 (CI).

This folder is a tier of its own (./run-tests.sh runs it after the fast tier): a pytest run over
all of tests/ leaves it out, and only a run naming this folder (or a file in it) collects it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from browser_sites import slow_site, unsafe_site
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, ViewportSize, expect, sync_playwright
from support.api_fixtures import API_KEY, serve_subprocess, wait_for_health
from support.site_fixtures import FixtureSite

from ragserver.config import Settings

HERE = Path(__file__).parent
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 800}
# Two CPUs shared with the server's models: an upload or a crawl's first pages can take a while.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect this folder only when the run names it (the browser tier), never in the fast tier's run."""
    if HERE not in collection_path.parents:
        return None
    asked = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve() for arg in config.args]
    if any(path == HERE or HERE in path.parents for path in asked):
        return None
    return True


@dataclass(frozen=True)
class Engine:
    """A browser the tier drives: Playwright's engine, the channel it speaks through and the installed binary."""

    name: str
    env_var: str
    default_binary: str
    package: str
    channel: str | None = None

    @property
    def binary(self) -> Path:
        return Path(os.environ.get(self.env_var, self.default_binary))

    def launch(self, playwright: Playwright) -> Browser:
        browser_type = getattr(playwright, self.name)
        return browser_type.launch(executable_path=str(self.binary), channel=self.channel, headless=True)


ENGINES = {
    "chromium": Engine("chromium", "RAGSERVER_CHROMIUM", "/usr/bin/chromium", "chromium"),
    # Stock Firefox through WebDriver BiDi; Playwright's own patched Firefox cannot be downloaded here.
    "firefox": Engine("firefox", "RAGSERVER_FIREFOX", "/usr/bin/firefox-esr", "firefox-esr", channel="moz-firefox"),
}


@pytest.fixture(params=list(ENGINES))
def browser_engine(request: pytest.FixtureRequest) -> str:
    """Which engine this run of a test uses (a test that must use one parametrizes this name)."""
    return str(request.param)


@dataclass
class WebPage:
    """A browser tab on one server, with every console error and uncaught page error it has shown."""

    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)

    def open(self, route: str = "#/sources") -> Page:
        self.page.goto(f"{self.base_url}/{route}")
        return self.page


OpenPage = Callable[..., WebPage]


def served(settings: Settings) -> Iterator[str]:
    """A `ragserver serve` process on these settings, once its database and models are ready."""
    with serve_subprocess(settings) as base_url:
        wait_for_health(base_url, lambda r: r.status_code == 200 and r.json()["status"] == "ok")
        yield base_url


@pytest.fixture(scope="session")
def web_settings(api_settings: Settings) -> Settings:
    """The API tests' database and models, allowed to crawl the fixture sites on 127.0.0.1."""
    return dataclasses.replace(api_settings, crawl_allowed_hosts="127.0.0.1", crawl_per_host_delay_ms=0)


@pytest.fixture(scope="session")
def open_server(web_settings: Settings) -> Iterator[str]:
    """Base URL of a server that needs no API key."""
    yield from served(web_settings)


@pytest.fixture(scope="session")
def keyed_server(web_settings: Settings) -> Iterator[str]:
    """Base URL of a server with RAGSERVER_API_KEY set (support.api_fixtures.API_KEY)."""
    yield from served(dataclasses.replace(web_settings, ragserver_api_key=API_KEY))


@pytest.fixture
def browser(browser_engine: str) -> Iterator[Browser]:
    engine = ENGINES[browser_engine]
    if not engine.binary.exists():
        missing = f"no {engine.name} at {engine.binary}: apt-get install {engine.package}, or set {engine.env_var}"
        if os.environ.get("RAGSERVER_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        launched = engine.launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def open_page(browser: Browser) -> OpenPage:
    """Opens a tab on a server (`open_page(base_url, viewport=PHONE)`), recording its errors."""

    def opened(base_url: str, viewport: ViewportSize = DESKTOP) -> WebPage:
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        web = WebPage(page, base_url)

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                web.errors.append(f"console: {message.text} at {message.location}")

        page.on("console", console)
        page.on("pageerror", lambda error: web.errors.append(f"page error: {error}"))
        return web

    return opened


@pytest.fixture
def web(open_page: OpenPage, open_server: str) -> WebPage:
    """A desktop-sized tab on the server without a key."""
    return open_page(open_server)


@pytest.fixture
def keyed_web(open_page: OpenPage, keyed_server: str) -> WebPage:
    """A desktop-sized tab on the server that needs the API key."""
    return open_page(keyed_server)


@pytest.fixture
def slow() -> Iterator[FixtureSite]:
    with slow_site() as site:
        yield site


@pytest.fixture
def unsafe() -> Iterator[FixtureSite]:
    with unsafe_site() as site:
        yield site
