"""Links as words: a markdown link's text without its target, and how much of a page is links.

A link target is dozens of characters of URL that no question is ever phrased in; embedded and
full-text indexed, it dilutes every chunk that cites another page. `link_words` keeps what a
reader sees (the link text, an image's alt text) and drops the targets. Inline code is left
as written, since a URL there is content.

`link_text` measures navigation pages (indexes, tables of contents, HTML sitemaps, tag lists):
the share of a page's text that is link text, where a list item, table row or term that
starts with a link counts whole, so an index entry's description ("argparse: parser for
command-line options") counts with its link. Prose with many inline references stays low.
"""

from __future__ import annotations

import re

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no types
from lxml.html import HtmlElement  # type: ignore[import-untyped]

# At least three quarters of the text: the Python docs' index and contents pages (and the module
# index, whose rows are a link and a description) lie above it, the tutorial's index page (a
# table of contents under a few paragraphs of prose) and every ordinary page below it.
LINK_DENSE_SHARE = 0.75
# A page with less link text than this costs a chunk or two whatever it is, and a small site's
# home page (a greeting and a few links) is kept rather than leaving the crawl with nothing.
LINK_DENSE_MIN_CHARS = 500

_CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_IMAGE = re.compile(r"!\[([^\[\]]*)\]\((?:[^()\s]|\([^()]*\))*(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_TARGET = r"(?:<[^<>\n]*>|(?:[^()\s]|\([^()\s]*\))*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*"
_LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(" + _TARGET + r"\)")
_REFERENCE_LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\[[^\[\]]*\]")
_DEFINITION = re.compile(r"^ {0,3}\[[^\[\]]+\]:[ \t]*\S+.*$", re.MULTILINE)
_HOLE = "\ue000{}\ue001"
_HOLES = re.compile("\ue000(\\d+)\ue001")
_MARKS = str.maketrans("", "", "\ue000\ue001")

ENTRY_TAGS = frozenset({"li", "tr", "dt"})


def link_words(text: str) -> str:
    """Markdown with links reduced to their text and images to their alt text; code spans untouched."""
    if "](" not in text and "][" not in text and "]:" not in text:
        return text
    text = text.translate(_MARKS)  # a text's own marks would be taken for the holes of its code spans
    spans: list[str] = []

    def hole(match: re.Match[str]) -> str:
        spans.append(match.group(0))
        return _HOLE.format(len(spans) - 1)

    text = _CODE_SPAN.sub(hole, text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REFERENCE_LINK.sub(r"\1", text)
    text = _DEFINITION.sub("", text)
    return _HOLES.sub(lambda match: spans[int(match.group(1))], text)


def link_text(roots: list[HtmlElement]) -> tuple[int, int]:
    """(characters of text, of them link text or in an entry that starts with a link) under `roots`."""
    counts = [_link_counts(root) for root in roots]
    return sum(total for total, _ in counts), sum(linked for _, linked in counts)


def is_link_dense(total: int, linked: int) -> bool:
    """An index, table of contents or sitemap: mostly link text, and enough of it to matter."""
    return linked >= LINK_DENSE_MIN_CHARS and linked >= LINK_DENSE_SHARE * total


def _link_counts(root: HtmlElement) -> tuple[int, int]:
    """(characters of text, characters counted as links) under root, walked without recursion."""
    # per element: (the entry it belongs to, whether it sits inside a link)
    context: dict[HtmlElement, tuple[HtmlElement | None, bool]] = {}
    entry_starts_with_link: dict[HtmlElement, bool] = {}
    total = linked = 0

    def count(text: str | None, entry: HtmlElement | None, in_link: bool) -> None:
        nonlocal total, linked
        size = len("".join(text.split())) if text else 0
        if not size:
            return
        total += size
        if entry is not None:
            starts = entry_starts_with_link.setdefault(entry, in_link)
            if starts:
                linked += size
                return
        if in_link:
            linked += size

    for event, el in etree.iterwalk(root, events=("start", "end")):
        parent = el.getparent()
        outer = context.get(parent, (None, False)) if parent is not None and el is not root else (None, False)
        if event == "end":
            if el is not root:
                count(el.tail, *outer)  # the tail comes after the element's own text, as in the page
            continue
        if not isinstance(el.tag, str):  # a comment or processing instruction holds no page text
            context[el] = outer
            continue
        entry = el if el.tag in ENTRY_TAGS else outer[0]
        in_link = outer[1] or (el.tag == "a" and el.get("href") is not None)
        context[el] = (entry, in_link)
        count(el.text, entry, in_link)
    return total, linked
