"""HTML to markdown, the one path for crawled pages and uploaded .html files alike.

The page is parsed once with lxml; its links (for the crawler's discovery) are read from the
whole page, then it is cut to its main content (content.py) and crawl4ai's markdown generator
writes the markdown. The cut happens on the tree rather than through crawl4ai's scraper
exclusions, because those remove the excluded elements before links are collected, and the
sidebar's links are how a crawl finds a site's pages.

Code blocks are fenced here, not by the generator: each <pre> is swapped for a placeholder,
and comes back as a fence carrying the language found in the usual class names (`language-x`,
`lang-x`, Sphinx `highlight-x`), exactly as written, and with a fence longer than any backtick
run in the code, so the chunker never sees a broken fence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from itertools import islice
from typing import Any
from urllib.parse import urljoin

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no types
from lxml.html import HtmlElement, document_fromstring, tostring  # type: ignore[import-untyped]

from ragserver.errors import InputError
from ragserver.ingest.content import ContentRules, main_content
from ragserver.ingest.links import is_link_dense, link_text

# The parse tree's memory grows with the number of elements (RELIABILITY.md has the measured cost):
# MAX_TAGS is a few times the element count of the largest page of the Python docs (contents.html).
# More is refused before parsing, so a hostile upload of <div> after <div> cannot exhaust memory.
MAX_TAGS = 500_000
# Sphinx/MkDocs heading permalinks ("[¶](url#anchor)") add noise to every heading and chunk.
PERMALINK = re.compile(r"\[[¶#§]\]\([^)]*\)")
PERMALINK_MARK = re.compile(r"\s*[¶#§]$")  # a heading's permalink anchor, read as text
_LANG_CLASS = re.compile(r"^(?:language|lang|highlight|sourceCode)-([\w+#.-]+)$")
_BACKTICK_RUN = re.compile(r"`{3,}")
_BLANK_RUNS = re.compile(r"\n{3,}")
_CODE_HOLE = "\ue002{}\ue003"
_FENCED_HOLE = re.compile(r"^[ \t]*```[^\n]*\n[ \t]*\ue002(\d+)\ue003[ \t]*\n[ \t]*```[ \t]*$", re.MULTILINE)
_BARE_HOLE = re.compile("\ue002(\\d+)\ue003")
_NOT_FOLLOWED = ("javascript:", "mailto:", "tel:", "data:")
_HIDDEN = frozenset({"script", "style", "noscript", "template"})
# What a page converts to, as a number: raise it with any change to the conversion's output, so a
# refresh re-converts pages an earlier release stored instead of keeping them on a 304.
CONVERSION = 2
_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "td",
        "th",
        "tr",
        "ul",
    ]
)
# Private-use characters the conversion marks code blocks with; a page's own would be mistaken for marks.
_MARKS = str.maketrans("", "", "\ue000\ue001\ue002\ue003")


@dataclass
class Converted:
    """What one HTML page yields: title, markdown (links kept, code fenced), links, and its link text."""

    title: str
    markdown: str
    links: list[str] = field(default_factory=list)
    text_chars: int = 0  # non-blank characters of the main content's text
    link_chars: int = 0  # of them, link text (links.py counts an entry that starts with a link whole)

    @property
    def link_share(self) -> float:
        return self.link_chars / self.text_chars if self.text_chars else 0.0

    @property
    def link_dense(self) -> bool:
        """An index, table of contents or sitemap page: followed for its links, not worth embedding."""
        return is_link_dense(self.text_chars, self.link_chars)


@dataclass
class _Code:
    text: str
    language: str


def convert_html(html: str, url: str = "", rules: ContentRules | None = None) -> Converted:
    """The page's main content as markdown; `url` resolves its links (uploads have none: links stay as written).

    A link-dense page comes without markdown when `rules.link_pages_markdown` is false.
    InputError for a page of more than MAX_TAGS tags.
    """
    rules = rules or ContentRules()
    if html.count("<") > MAX_TAGS:
        raise InputError(f"the HTML has more than {MAX_TAGS} tags; split it into smaller files")
    html = html.translate(_MARKS)
    if not html.strip():
        return Converted("", "")
    try:
        doc = document_fromstring(html)
    except etree.ParserError:  # nothing but a comment or a doctype
        return Converted("", "")
    title = " ".join((doc.findtext(".//title") or "").split())
    links = _links(doc, url)
    roots = main_content(doc, rules)
    if not roots:  # no element keeps text once its chrome is gone (or lxml's depth limit lost it)
        return Converted(title, whole_text(html), links)
    title = _page_title(title, next((el for root in roots for el in root.iter("h1")), None))
    text_chars, link_chars = link_text(roots)
    if not rules.link_pages_markdown and is_link_dense(text_chars, link_chars):
        return Converted(title, "", links, text_chars, link_chars)
    codes = [_take_code(pre, number) for number, pre in enumerate(_outer_pres(roots))]
    content = "".join(tostring(root, encoding="unicode", with_tail=False) for root in roots)
    try:
        markdown = (
            _generator()
            .generate_markdown(
                f"<div>{content}</div>",
                base_url=url,
                citations=False,
                html2text_options={"ul_item_mark": "-", "single_line_break": False},
            )
            .raw_markdown
        )
    except RecursionError:  # pathologically nested markup: its text rather than a failure
        markdown = "\n".join(root.text_content() for root in roots)
    markdown = _BLANK_RUNS.sub("\n\n", PERMALINK.sub("", markdown))
    return Converted(title, _restore_code(markdown, codes).strip(), links, text_chars, link_chars)


def _page_title(title: str, h1: HtmlElement | None) -> str:
    """The page's own title: its first h1 when the <title> is that h1 plus the site's name
    ("argparse — ... — Python 3.11 documentation"), so every chunk's context line names the page
    once and not the site; else the <title>, else the h1."""
    heading = PERMALINK_MARK.sub("", " ".join(h1.text_content().split())).strip() if h1 is not None else ""
    if heading and (not title or title.casefold().startswith(heading.casefold())):
        return heading
    return title


def whole_text(html: str) -> str:
    """All the text of a page outside scripts and styles, read as a stream (no tree, so no depth limit)."""
    reader = _TextReader()
    reader.feed(html)
    reader.close()
    return _BLANK_RUNS.sub("\n\n", "".join(reader.parts)).strip()


class _TextReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in _HIDDEN
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in _HIDDEN and self._hidden > 0
        self._break(tag)

    def _break(self, tag: str) -> None:
        """Blocks (headings, paragraphs, list items, cells...) end a paragraph, so their texts never run together."""
        if tag in _BLOCKS and self.parts and self.parts[-1] != "\n\n":
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


@cache
def _generator() -> Any:
    """crawl4ai's markdown generator, imported on first use (the import is slow; markdown.py explains)."""
    from crawl4ai.markdown_generation_strategy import DefaultMarkdownGenerator

    return DefaultMarkdownGenerator()


def _links(doc: HtmlElement, url: str) -> list[str]:
    """Every page the page links to (chrome included), absolute when `url` is given, once each, no fragments."""
    base = urljoin(url, doc.find(".//base").get("href") or "") if doc.find(".//base") is not None else url
    hrefs = {(el.get("href") or "").strip().partition("#")[0]: None for el in doc.iter("a", "area")}
    found = {urljoin(base, href) if base else href: None for href in hrefs if href}  # urljoin once per target
    return [link for link in found if not link.lower().startswith(_NOT_FOLLOWED)]


def _outer_pres(roots: list[HtmlElement]) -> list[HtmlElement]:
    return [pre for root in roots for pre in root.iter("pre") if not any(p.tag == "pre" for p in pre.iterancestors())]


def _take_code(pre: HtmlElement, number: int) -> _Code:
    """The code of a <pre>, which is left holding placeholder `number` (the generator passes it through)."""
    code = _Code(pre.text_content().strip("\n"), _code_language(pre))
    for child in list(pre):
        pre.remove(child)
    pre.text = _CODE_HOLE.format(number)
    return code


def _code_language(pre: HtmlElement) -> str:
    """The language named by a class on the <pre>, its <code> child, or a close wrapper (Sphinx nests two)."""
    for el in [pre, pre.find("code"), *islice(pre.iterancestors(), 3)]:
        if el is None:
            continue
        for cls in (el.get("class") or "").split():
            match = _LANG_CLASS.match(cls)
            if match and match.group(1).lower() not in {"default", "none", "text"}:
                return match.group(1).lower()
    return ""


def _fence(code: _Code) -> str:
    longest = max((len(run) for run in _BACKTICK_RUN.findall(code.text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{code.language}\n{code.text}\n{fence}"


def _restore_code(markdown: str, codes: list[_Code]) -> str:
    """Each placeholder back as its fenced block (the generator's own fence around it replaced)."""
    markdown = _FENCED_HOLE.sub(lambda match: _fence(codes[int(match.group(1))]), markdown)
    return _BARE_HOLE.sub(lambda match: "\n\n" + _fence(codes[int(match.group(1))]) + "\n\n", markdown)
