"""The main content of an HTML page: the element a docs site puts its text in, minus the page chrome.

Navigation, sidebars, breadcrumbs, previous/next bars and cookie banners repeat on every page of a
site; chunked, they crowd out the text that answers questions. The page is cut on its lxml tree
with CSS selectors (the cssselect dialect crawl4ai itself uses), before any markdown is written:

1. a crawl's own `content_selector`, else the first of MAIN_SELECTORS that matches an element
   holding text once its chrome is gone (the layouts of Sphinx, MkDocs Material, Docusaurus, Read
   the Docs, GitBook, then the generic `[role=main]`, `main`, `article`);
2. else the whole body minus the chrome;
3. else nothing, and the caller falls back to the page's whole text, so a page that has text
   never comes out empty.

The cut is destructive (no copy of a large tree); links for discovery are read before it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cssselect import SelectorError
from lxml.cssselect import CSSSelector  # type: ignore[import-untyped]
from lxml.html import HtmlElement  # type: ignore[import-untyped]

# Most specific first: a framework's content element beats the generic <main> that also holds its bars.
MAIN_SELECTORS = (
    "article.md-content__inner",  # MkDocs Material
    ".md-content",
    ".theme-doc-markdown",  # Docusaurus docs
    "[itemprop=articleBody]",  # Read the Docs theme, Docusaurus blog posts, schema.org blogs
    ".rst-content",
    ".markdown-section",  # GitBook (legacy)
    "div.body",  # Sphinx (basic, classic, alabaster, the Python docs)
    "[role=main]",
    "main",
    "article",
    "div.document",  # Sphinx themes without a body div (its sidebar goes as chrome)
)

# Chrome inside or around the content element. Class and id patterns are the widgets' own names,
# never bare words like "cookie" or "sidebar" that a documentation section may be called.
CHROME_SELECTORS = (
    # a form is kept (ASP.NET pages wrap the whole body in one), its controls go, a search form whole
    "script, style, noscript, template, iframe, button, input, select, textarea, dialog, form[role=search]",
    "svg:not([id^='mermaid-'])",
    # docutils writes footnotes, topics (an abstract), admonitions and its sidebar directive as <aside>
    # (an aside.sidebar is content there), so a site's own sidebar goes by its theme's names below
    "nav, aside:not(.footnote):not(.footnote-list):not(.topic):not(.admonition):not(.sidebar), footer",
    "[role=navigation], [role=banner], [role=contentinfo], [role=search]",
    ".breadcrumb, .breadcrumbs, .md-path, .theme-doc-breadcrumbs, .wy-breadcrumbs, [aria-label=breadcrumbs]",
    "[aria-label=Breadcrumbs], [aria-label=breadcrumb]",
    ".skip-link, .skip-to-content, .md-skip, [class*=skipToContent], a[href='#content'], a[href='#main-content']",
    "div.related, div.footer, .md-footer, .pagination-nav, .rst-footer-buttons, .prev-next-area, .related-pages",
    ".nav-links, .post-navigation, .sphinxsidebar, .md-sidebar, .wy-nav-side, .bd-sidebar, .sidebar-drawer",
    ".toc-drawer, .theme-doc-sidebar-container, .theme-doc-toc-mobile, .theme-doc-toc-desktop",
    "#sidebar, .widget-area, .md-header, .md-tabs, .md-content__button, .md-source-file, .theme-edit-this-page",
    "[id*=cookie-banner], [class*=cookie-banner], [id*=cookie-consent], [class*=cookie-consent]",
    "[class*=cookieConsent], [id*=cookieConsent], [class*=cookie-notice], [id*=cookie-notice]",
    "#onetrust-consent-sdk, .cc-window, .headerlink",
)
# A <header> inside the article or main element is the page's own (its h1); elsewhere it is the site's.
SITE_HEADER = "descendant-or-self::header[not(ancestor::article) and not(ancestor::main)]"


def check_selector(css: str) -> str:
    """The selector unchanged when lxml can compile it; ValueError with the reason when not."""
    try:
        CSSSelector(css)
    except (SelectorError, SyntaxError, ValueError) as exc:
        raise ValueError(f"not a valid CSS selector: {css!r} ({exc})") from exc
    return css


@dataclass(frozen=True)
class ContentRules:
    """A crawl's overrides: where its content is (CSS), what else to cut (CSS, each), and whether a
    link-dense page needs its markdown (a crawl that only follows such pages saves writing it)."""

    content_selector: str | None = None
    exclude_selectors: tuple[str, ...] = ()
    link_pages_markdown: bool = True


@functools.lru_cache(maxsize=256)
def _compiled(css: str) -> CSSSelector:
    """A selector compiled once per process (each page would otherwise compile a dozen)."""
    return CSSSelector(css)


def main_content(doc: HtmlElement, rules: ContentRules) -> list[HtmlElement]:
    """The page's content elements, cleaned in place, in document order; [] when none holds text."""
    chrome = _compiled(", ".join([*CHROME_SELECTORS, *rules.exclude_selectors]))
    selectors = [rules.content_selector] if rules.content_selector else []
    for css in [*selectors, *MAIN_SELECTORS]:
        found = [_cleaned(el, chrome) for el in _outermost(_compiled(css)(doc))]
        with_text = [el for el in found if _has_text(el)]
        if with_text:
            return with_text
    body = doc.find("body")
    body = _cleaned(doc if body is None else body, chrome)
    return [body] if _has_text(body) else []


def _outermost(elements: list[HtmlElement]) -> list[HtmlElement]:
    """Matches not inside another match (`article` inside `article` would be taken twice)."""
    chosen = set(elements)
    return [el for el in elements if not any(parent in chosen for parent in el.iterancestors())]


def _cleaned(root: HtmlElement, chrome: CSSSelector) -> HtmlElement:
    """`root` with its chrome dropped (the text after a dropped element stays)."""
    for el in [*chrome(root), *root.xpath(SITE_HEADER)]:
        if el is not root and el.getparent() is not None:
            el.drop_tree()
    return root


def _has_text(el: HtmlElement) -> bool:
    return bool(el.text_content().strip())
