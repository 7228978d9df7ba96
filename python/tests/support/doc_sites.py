"""Documentation sites laid out like Sphinx, MkDocs Material, Docusaurus and a plain blog (content room).

Each layout wraps the same pages in its own chrome: navigation, a sidebar, breadcrumbs,
previous/next links, a footer, a "skip to content" link and a cookie banner. Every kind of
chrome carries one made-up word (CHROME_WORDS) that no page body uses, and every page body has
words of its own (BODY_WORDS), so a test can tell exactly what was kept. The site's home page
is a table of contents (link-dense); /guide/advanced.html is linked from it alone, so a crawl
reaches that page only by following the index. Content pages link with absolute URLs
({base}), so the same HTML uploaded as a file converts to the same markdown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from support.site_fixtures import FixtureSite, Route

CHROME_WORDS = {
    "nav": "zebranav",
    "sidebar": "yaksidebar",
    "breadcrumbs": "vulturecrumbs",
    "prev_next": "urchinpager",
    "footer": "walrusfooter",
    "skip": "sealskip",
    "cookie": "tapircookie",
    "toc": "rhinotoc",
}
CONTENT_PATHS = ("/guide/install.html", "/guide/usage.html", "/api/factory.html", "/guide/advanced.html")
INDEX_PATH = "/"
# words only in the body of each page, and what a link and an image of that body say
BODY_WORDS = {
    "/guide/install.html": "marmalade",
    "/guide/usage.html": "sprocket",
    "/api/factory.html": "gearbox",
    "/guide/advanced.html": "flywheel",
}
LINK_WORDS = "widget factory reference"
IMAGE_ALT = "diagram of the widget pipeline"
CODE_URL = "https://downloads.example.org/widgets-1.0.tar.gz"
SIDEBAR_PATHS = CONTENT_PATHS[:3]  # advanced.html is in the index's contents only


@dataclass(frozen=True)
class DocPage:
    path: str
    title: str
    body: str  # the main content's HTML, without the chrome


def _content_page(path: str, title: str) -> DocPage:
    word = BODY_WORDS[path]
    body = f"""<h1>{title}<a class="headerlink" href="#top" title="Permalink">¶</a></h1>
<p>This page explains {word} handling for widgets. Every widget keeps its {word} settings in one place,
and the <a href="{{base}}/api/factory.html">{LINK_WORDS}</a> lists every option a widget accepts.</p>
<p><img src="{{base}}/_images/pipeline.png" alt="{IMAGE_ALT}"></p>
<h2 id="steps">Steps for {word}<a class="headerlink" href="#steps">¶</a></h2>
<p>Download the release, unpack it and run the installer; the {word} step takes a few seconds on
most machines, and the log says when it is done.</p>
<div class="highlight-bash notranslate"><div class="highlight"><pre>curl -O {CODE_URL}
tar xf widgets-1.0.tar.gz   # then configure the {word} settings</pre></div></div>
<ul><li>Widgets start in the {word} state.</li><li>They stop when asked to.</li></ul>"""
    return DocPage(path, title, body)


def _index_page() -> DocPage:
    entries = []
    for path in CONTENT_PATHS:
        name = path.rsplit("/", 1)[-1].removesuffix(".html")
        for section in ("Overview", "Steps", "Options", "Troubleshooting", "Examples", "Reference notes"):
            anchor = section.lower().replace(" ", "-")
            entries.append(f'<li><a href="{path.lstrip("/")}#{anchor}">{section} of the {name} chapter</a></li>')
    body = f"<h1>Widgets documentation</h1><p>Welcome to the widgets manual.</p><ul>{''.join(entries)}</ul>"
    return DocPage(INDEX_PATH, "Widgets documentation", body)


PAGES = [
    _index_page(),
    _content_page("/guide/install.html", "Installing widgets"),
    _content_page("/guide/usage.html", "Using widgets"),
    _content_page("/api/factory.html", "Widget factory API"),
    _content_page("/guide/advanced.html", "Advanced widgets"),
]
W = CHROME_WORDS


def _links(words: str) -> str:
    return "".join(f'<li><a href="{path}">{words} {path.rsplit("/", 1)[-1]}</a></li>' for path in SIDEBAR_PATHS)


def sphinx(page: DocPage) -> str:
    """The classic Sphinx theme (as the Python docs): related bars, div.body, sphinxsidebar, footer."""
    related = f'<div class="related" role="navigation"><h3>Navigation</h3><ul>{_links(W["prev_next"])}</ul></div>'
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{page.title} — Widgets 1.0 documentation</title>
<script>var {W["nav"]} = 1;</script></head><body>
<a class="skip-link" href="#content">{W["skip"]} skip to content</a>
<div class="mobile-nav"><nav class="nav-content" role="navigation"><a href="/">{W["nav"]} home</a></nav></div>
{related}
<div class="document"><div class="documentwrapper"><div class="bodywrapper"><div class="body" role="main">
{page.body}
</div></div></div>
<div class="sphinxsidebar" role="navigation"><div class="sphinxsidebarwrapper"><h3>Table of Contents</h3>
<ul>{_links(W["sidebar"])}</ul><p>{W["breadcrumbs"]} this page</p></div></div><div class="clearer"></div></div>
{related}
<div class="footer">© Copyright 2024, {W["footer"]} makers.</div>
<div id="cookie-banner">{W["cookie"]}: this site uses cookies. <button>OK</button></div>
</body></html>"""


def mkdocs_material(page: DocPage) -> str:
    """MkDocs Material: md-header and tabs, primary and secondary sidebars, article.md-content__inner, md-footer."""
    return f"""<!doctype html><html><head><title>{page.title} - Widgets</title></head><body>
<a href="#steps" class="md-skip">{W["skip"]} skip to content</a>
<header class="md-header"><nav class="md-header__inner">{W["nav"]} Widgets</nav></header>
<div class="md-container"><nav class="md-tabs"><ul>{_links(W["nav"])}</ul></nav>
<main class="md-main"><div class="md-main__inner md-grid">
<div class="md-sidebar md-sidebar--primary"><nav class="md-nav md-nav--primary"><ul>{_links(W["sidebar"])}</ul></nav>
</div>
<div class="md-sidebar md-sidebar--secondary"><nav class="md-nav md-nav--secondary">{W["toc"]} on this page</nav></div>
<div class="md-content" data-md-component="content"><article class="md-content__inner md-typeset">
<a href="https://github.com/x/edit" class="md-content__button md-icon" title="Edit">{W["breadcrumbs"]} edit</a>
{page.body}
</article></div></div></main>
<footer class="md-footer"><nav class="md-footer__inner"><ul>{_links(W["prev_next"])}</ul></nav>
<div class="md-copyright">{W["footer"]} made with Material for MkDocs</div></footer></div>
<div class="md-consent"><div class="cookie-consent">{W["cookie"]} consent</div></div>
</body></html>"""


def docusaurus(page: DocPage) -> str:
    """Docusaurus: navbar, doc sidebar, article with breadcrumbs and .theme-doc-markdown, TOC, pagination."""
    return f"""<!doctype html><html><head><title>{page.title} | Widgets</title></head><body>
<div role="region" aria-label="Skip to main content">
<a class="skipToContent_fXgn" href="#__docusaurus">{W["skip"]} skip</a></div>
<nav class="navbar navbar--fixed-top"><a class="navbar__brand" href="/">{W["nav"]} Widgets</a></nav>
<div class="main-wrapper"><div class="docsWrapper"><div class="docRoot">
<aside class="theme-doc-sidebar-container"><ul class="menu__list">{_links(W["sidebar"])}</ul></aside>
<main class="docMainContainer"><div class="container"><div class="row"><div class="col docItemCol">
<div class="docItemContainer"><article>
<nav class="theme-doc-breadcrumbs" aria-label="Breadcrumbs"><ul><li><a href="/">{W["breadcrumbs"]} home</a></li></ul>
</nav>
<div class="theme-doc-markdown markdown"><header>{page.body.split("</h1>", 1)[0]}</h1></header>
{page.body.split("</h1>", 1)[1]}</div>
<footer class="theme-doc-footer docusaurus-mt-lg">
<a href="https://github.com/x/edit">{W["footer"]} edit this page</a></footer>
</article>
<nav class="pagination-nav docusaurus-mt-lg" aria-label="Docs pages">
<a class="pagination-nav__link" href="/">{W["prev_next"]} previous</a></nav>
</div></div>
<div class="col col--3"><div class="tableOfContents theme-doc-toc-desktop"><ul class="table-of-contents">
<li>{W["toc"]} steps</li></ul></div></div>
</div></div></main></div></div></div>
<footer class="footer footer--dark">{W["footer"]} copyright</footer>
<div class="cookie-banner">{W["cookie"]} we use cookies</div>
</body></html>"""


def blog(page: DocPage) -> str:
    """A plain blog: site header with nav, breadcrumbs and post navigation inside main, a sidebar, a footer."""
    head, rest = page.body.split("</h1>", 1)
    return f"""<!doctype html><html><head><title>{page.title} – The Widget Blog</title></head><body>
<a class="skip-link screen-reader-text" href="#content">{W["skip"]} skip to content</a>
<header class="site-header"><div class="site-title">{W["nav"]} The Widget Blog</div><nav><ul>{_links(W["nav"])}</ul>
</nav></header>
<main id="content">
<div class="breadcrumbs"><a href="/">{W["breadcrumbs"]} home</a> › posts</div>
<article class="post"><header class="entry-header">{head}</h1><p class="meta">Posted on 1 May by the editor</p></header>
<div class="entry-content">{rest}</div>
<footer class="entry-footer">Tags: {W["footer"]} widgets</footer></article>
<nav class="post-navigation"><div class="nav-links"><a href="/">{W["prev_next"]} older posts</a></div></nav>
</main>
<aside class="sidebar widget-area"><section class="widget"><ul>{_links(W["sidebar"])}</ul></section></aside>
<footer class="site-footer">{W["footer"]} proudly powered</footer>
<div id="cookie-notice">{W["cookie"]} accept cookies</div>
</body></html>"""


LAYOUTS: dict[str, Callable[[DocPage], str]] = {
    "sphinx": sphinx,
    "mkdocs_material": mkdocs_material,
    "docusaurus": docusaurus,
    "blog": blog,
}


def doc_site(layout: str) -> FixtureSite:
    """The site's pages in one layout, served on 127.0.0.1 (no robots.txt, sitemap or llms.txt: links only)."""
    render = LAYOUTS[layout]
    return FixtureSite({page.path: Route(render(page)) for page in PAGES})
