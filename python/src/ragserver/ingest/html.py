"""HTML to markdown for uploaded .html files, built on markdownify + BeautifulSoup.

Page chrome (nav, scripts, styles, forms) is dropped before conversion; the main content
element is preferred when the page marks one. Code blocks come out as fenced blocks with the
language found in the usual class names (`language-x`, `lang-x`, Sphinx `highlight-x`), and the
fence grows when the code itself contains backtick runs, so the chunker never sees a broken fence.
"""

from __future__ import annotations

import re
from itertools import islice

from bs4 import BeautifulSoup, Tag
from markdownify import ATX, MarkdownConverter

from ragserver.errors import InputError

_DROP = ["script", "style", "noscript", "template", "nav", "iframe", "svg", "form", "button", "head"]
_PAGE_CHROME = ["header", "footer", "aside"]
_LANG_CLASS = re.compile(r"^(?:language|lang|highlight|sourceCode)-([\w+#.-]+)$")
_BACKTICK_RUN = re.compile(r"`{3,}")
_BLANK_RUNS = re.compile(r"\n{3,}")
# The parse tree's memory grows with the number of elements (RELIABILITY.md has the measured cost):
# MAX_TAGS is a few times the element count of the largest page of the Python docs (contents.html).
# More is refused before parsing, so a hostile upload of <div> after <div> cannot exhaust memory.
MAX_TAGS = 500_000


class _Converter(MarkdownConverter):
    """markdownify with fences that survive code containing ``` runs."""

    def convert_pre(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        block: str = super().convert_pre(el, text, parent_tags)  # type: ignore[misc]  # the stub omits convert_*
        longest = max((len(run) for run in _BACKTICK_RUN.findall(text)), default=0)
        if not longest:
            return block
        fence = "`" * (longest + 1)
        head, _, rest = block.partition("```")
        body, _, tail = rest.rpartition("```")
        return f"{head}{fence}{body}{fence}{tail}"


def _code_language(pre: Tag) -> str | None:
    """The language named by a class on the <pre>, its <code> child, or a close wrapper (Sphinx nests two)."""
    for el in [pre, pre.find("code"), *islice(pre.parents, 3)]:
        if not isinstance(el, Tag):
            continue
        for cls in el.get("class") or []:
            match = _LANG_CLASS.match(cls)
            if match and match.group(1).lower() not in {"default", "none", "text"}:
                return match.group(1).lower()
    return None


def _content_root(soup: BeautifulSoup) -> Tag:
    """The element holding the page's content: <main>, a single <article>, or the whole body."""
    main = soup.find_all("main")
    if len(main) == 1:
        return main[0]
    articles = soup.find_all("article")
    if len(articles) == 1:
        return articles[0]
    return soup.body or soup


def _strip_chrome(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for tag in soup.find_all(role="navigation"):
        tag.decompose()
    for tag in soup.find_all(_PAGE_CHROME):
        if tag.find_parent(["article", "main"]) is None:
            tag.decompose()


def html_to_markdown(html: str) -> tuple[str, str]:
    """(title, markdown) of an HTML page; title is '' when the page has none.

    markdownify converts recursively, so pathologically nested markup (hostile or generated)
    falls back to the page's plain text rather than failing the upload.
    """
    if html.count("<") > MAX_TAGS:
        raise InputError(f"the HTML has more than {MAX_TAGS} tags; split it into smaller files")
    soup = BeautifulSoup(html, "lxml")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    _strip_chrome(soup)
    root = _content_root(soup)
    if not title:
        h1 = root.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else ""
    converter = _Converter(heading_style=ATX, code_language_callback=_code_language, bullets="-")
    try:
        markdown = converter.convert_soup(root)
    except RecursionError:
        markdown = root.get_text("\n")
    return title, _BLANK_RUNS.sub("\n\n", markdown).strip()
