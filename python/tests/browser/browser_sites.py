"""Sites the browser tests crawl, served on 127.0.0.1 by the crawl tests' FixtureSite.

`unsafe_site()`: a page whose text quotes a script tag, an image with an onerror handler and
carries a javascript: link. The HTML escapes them, so the stored markdown holds them as raw
markup: exactly what a careless renderer would turn into running code.
`slow_site()`: an index linking many pages that each answer late, so a crawl is still running
(its counts growing) when a test presses Stop.
"""

from __future__ import annotations

from support.site_fixtures import FixtureSite, Route, page

PWNED_SCRIPT = "<script>window.__pwned=1</script>"
PWNED_IMAGE = '<img src=x onerror="window.__pwned=2">'
PWNED_LINK_TEXT = "a javascript link"
UNSAFE_TITLE = "Markup quoted in text"
SLOW_PAGES = 200
SLOW_PAGE_DELAY_S = 0.4
WORDS = "Widgets keep their settings in one place and every option is described on its own page. "


def unsafe_site() -> FixtureSite:
    """One page of text quoting markup that must stay text."""
    body = (
        f"<p>{WORDS * 3}</p>"
        "<p>The page quotes markup: &lt;script&gt;window.__pwned=1&lt;/script&gt; which is only text.</p>"
        '<p>And an image tag: &lt;img src=x onerror="window.__pwned=2"&gt; also only text.</p>'
        f'<p>Here is <a href="javascript:window.__pwned=3">{PWNED_LINK_TEXT}</a> that must not run.</p>'
    )
    return FixtureSite({"/": page(UNSAFE_TITLE, body)})


def slow_site() -> FixtureSite:
    """An index of SLOW_PAGES pages, each delayed by SLOW_PAGE_DELAY_S (the crawl outlasts any test step)."""
    paths = [f"/page{i}.html" for i in range(SLOW_PAGES)]
    routes: dict[str, Route] = {"/": page("Slow index", f"<p>{WORDS * 3}</p>", paths)}
    for number, path in enumerate(paths):
        slow = page(f"Slow page {number}", f"<p>{WORDS * 4}</p>")
        slow.delay_s = SLOW_PAGE_DELAY_S
        routes[path] = slow
    return FixtureSite(routes)
