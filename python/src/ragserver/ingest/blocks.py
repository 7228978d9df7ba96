"""Markdown split into headings, paragraphs and fenced code blocks: the units the chunker packs.

A deliberately small line scanner, not a full CommonMark parser: the chunker only needs to
know where headings start sections, where paragraphs end, and where fences open and close
(``` or ~~~, any length, any indentation so fences inside list items count), so that a code
block is never cut. An unclosed fence runs to the end of the document, as in CommonMark.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

HEADING = "heading"
TEXT = "text"
CODE = "code"

_FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}(?=[^`]*$)|~{3,})[ \t]*(?P<info>.*)$")
_ATX = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?[ \t]*$")
_ATX_CLOSING = re.compile(r"(?:^|[ \t]+)#+$")
_SETEXT = re.compile(r"^ {0,3}(?P<underline>=+|-+)[ \t]*$")


@dataclass
class Block:
    """One unit of a document. For code, `text` is the whole fenced block and `code` its body."""

    kind: str
    text: str
    level: int = 0
    language: str = ""
    code: str = ""


def iter_blocks(text: str, *, markdown: bool = True) -> Iterator[Block]:
    """Blocks of the text in order; with markdown=False only blank-line paragraphs (prose files)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    paragraph: list[str] = []
    fence: _OpenFence | None = None
    for line in lines:
        if fence is not None:
            fence.lines.append(line)
            if fence.closed_by(line):
                yield fence.block()
                fence = None
            continue
        if markdown:
            if opened := _FENCE_OPEN.match(line):
                yield from _flush(paragraph)
                fence = _OpenFence(opened.group("fence"), opened.group("info"), [line])
                continue
            if atx := _ATX.match(line):
                yield from _flush(paragraph)
                yield Block(HEADING, _ATX_CLOSING.sub("", atx.group("text") or "").strip(), len(atx["hashes"]))
                continue
            if paragraph and (setext := _SETEXT.match(line)):
                heading = " ".join(part.strip() for part in paragraph)
                paragraph.clear()
                yield Block(HEADING, heading, 1 if setext.group("underline")[0] == "=" else 2)
                continue
        if not line.strip():
            yield from _flush(paragraph)
            continue
        paragraph.append(line)
    if fence is not None:
        yield fence.block()
    yield from _flush(paragraph)


def first_heading(text: str, *, level: int = 1, max_blocks: int = 200) -> str:
    """The text of the first heading of this level near the top, or '' (used as a title)."""
    for number, block in enumerate(iter_blocks(text)):
        if number >= max_blocks:
            break
        if block.kind == HEADING and block.level == level and block.text:
            return block.text
    return ""


def _flush(paragraph: list[str]) -> Iterator[Block]:
    if paragraph:
        yield Block(TEXT, "\n".join(paragraph))
        paragraph.clear()


@dataclass
class _OpenFence:
    marker: str
    info: str
    lines: list[str]

    def closed_by(self, line: str) -> bool:
        stripped = line.strip()
        char = self.marker[0]
        return len(stripped) >= len(self.marker) and stripped == char * len(stripped)

    def block(self) -> Block:
        closed = len(self.lines) > 1 and self.closed_by(self.lines[-1])
        body = self.lines[1:-1] if closed else self.lines[1:]
        language = self.info.split()[0] if self.info.split() else ""
        return Block(CODE, "\n".join(self.lines), language=language.lower(), code="\n".join(body))
