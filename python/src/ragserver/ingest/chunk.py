"""Documents to chunks sized for the embedder, plus long code blocks as code examples.

Sections start at headings and every chunk belongs to one section, so its heading path is
exact. Each chunk's content starts with a one-line context (document title > headings) because
a chunk is embedded, full-text indexed and reranked on its own: "Installation > Linux" in
the text lets a query about installing the library find a section that never names it.
Code fences are kept whole, even when one block alone exceeds the size, up to
MAX_CODE_BLOCK_CHARS; prose is packed by paragraph, and a paragraph that is too big is cut at
sentences, then lines, then words. A code block beyond that cap (a whole source file in one
fence, or a fence never closed) is cut at lines into fenced pieces, and headings are capped:
Postgres cannot full-text index a chunk whose tsvector passes 1 MB, so such a chunk would fail
the whole document's write.

Chunks carry words, not link targets: links become their text and images their alt text
(links.py) in everything but code, while the document's markdown keeps its links for reading.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from ragserver.domain import Chunk, CodeExample, Document
from ragserver.ingest import blocks as md
from ragserver.ingest.formats import TEXT
from ragserver.ingest.links import link_words

CountTokens = Callable[[list[str]], list[int]]

SPECIAL_TOKENS_RESERVE = 2  # [CLS]/[SEP] or <s>/</s>: the embedder adds them to every input
PARAGRAPH_JOIN_COST = 1  # "\n\n" between paragraphs may be a token of its own (BPE)
CONTEXT_SHARE = 4  # the context line may take at most 1/4 of a chunk
CONTEXT_PART_CHARS = 120
CODE_CONTEXT_CHARS = 1000
CHUNK_METADATA_KEYS = ("doc_id", "page")  # carried onto chunks so a hit can cite its corpus id / PDF page
_WINDOW_CHARS = 50_000  # hostile single paragraphs are cut into windows before tokenizing
MAX_CODE_BLOCK_CHARS = 20_000  # larger code blocks are split (and are not code examples)
MAX_HEADING_CHARS = 1_000  # a heading is stored on every chunk of its section
MAX_FENCE_CHARS = 32  # fence and language of the pieces of a split code block
_FENCE_RUN = re.compile(r"[`~]+")

# Cut points for an oversize paragraph, coarsest first; each piece keeps its trailing whitespace
# so the pieces concatenate back to the original text.
_CUTS = [
    re.compile(r"(?<=[.!?。！？])\s+"),
    re.compile(r"\n+"),
    re.compile(r"\s+"),
]


def context_line(title: str, heading_path: list[str]) -> str:
    """'Title > Heading > Subheading', skipping a heading that repeats the one before it (H1 == title)."""
    parts: list[str] = []
    for raw in [title, *heading_path]:
        part = " ".join(raw.split())[:CONTEXT_PART_CHARS]
        if part and (not parts or parts[-1].casefold() != part.casefold()):
            parts.append(part)
    return " > ".join(parts)


def chunk_document(
    doc: Document, *, max_tokens: int, count_tokens: CountTokens, code_min_chars: int = 300
) -> tuple[list[Chunk], list[CodeExample]]:
    """Chunks (content = context line + body) and code examples of one document.

    `count_tokens` is the embedder's tokenizer (list in, counts out); whether it counts special
    tokens is measured on the empty string, so pieces can be summed. Only whole code blocks
    may exceed `max_tokens`.
    """
    overhead = count_tokens([""])[0]
    count = _net(count_tokens, overhead)
    room = max_tokens - max(SPECIAL_TOKENS_RESERVE, overhead)
    chunks: list[Chunk] = []
    examples: list[CodeExample] = []
    is_markdown = doc.metadata.get("format") != TEXT
    carried = {key: doc.metadata[key] for key in CHUNK_METADATA_KEYS if key in doc.metadata}
    blocks = md.iter_blocks(doc.markdown, markdown=is_markdown)
    for path, section in _sections(_without_link_targets(blocks) if is_markdown else blocks):
        context = _fitting_context(doc.title, path, room, count)
        budget = room - (count([context])[0] + PARAGRAPH_JOIN_COST if context else 0)
        for body in _pack(section, max(budget, 1), count):
            content = f"{context}\n\n{body}" if context else body
            chunks.append(Chunk(index=len(chunks), content=content, heading_path=list(path), metadata=dict(carried)))
        for example in _code_examples(section, path, code_min_chars):
            example.index = len(examples)
            examples.append(example)
    return chunks, examples


def _net(count_tokens: CountTokens, overhead: int) -> CountTokens:
    """Counts without the per-text special tokens, so the counts of pieces add up."""

    def count(texts: list[str]) -> list[int]:
        return [max(0, n - overhead) for n in count_tokens(texts)] if texts else []

    return count


def _without_link_targets(blocks: Iterator[md.Block]) -> Iterator[md.Block]:
    """Headings and paragraphs with link words only (code as written); a paragraph left blank goes."""
    for block in blocks:
        if block.kind == md.CODE:
            yield block
            continue
        text = link_words(block.text)
        if text.strip() or block.kind == md.HEADING:
            yield replace(block, text=text.strip() if block.kind == md.HEADING else text)


def _sections(blocks: Iterator[md.Block]) -> Iterator[tuple[list[str], list[md.Block]]]:
    """(heading path, body blocks) per section that has a body; headings never appear in bodies.

    An empty heading ('#' alone) still closes deeper sections but adds nothing to the path.
    """
    stack: list[tuple[int, str]] = []
    body: list[md.Block] = []
    for block in blocks:
        if block.kind != md.HEADING:
            body.append(block)
            continue
        if body:
            yield [text for _, text in stack if text], body
            body = []
        while stack and stack[-1][0] >= block.level:
            stack.pop()
        stack.append((block.level, block.text[:MAX_HEADING_CHARS]))
    if body:
        yield [text for _, text in stack if text], body


def _fitting_context(title: str, path: list[str], max_tokens: int, count_tokens: CountTokens) -> str:
    """The context line, dropping outer parts while it takes more than its share of the chunk."""
    limit = max_tokens // CONTEXT_SHARE
    parts = [title, *path]
    while parts:
        context = context_line(parts[0], parts[1:])
        if not context or count_tokens([context])[0] <= limit:
            return context
        parts = parts[1:]
    return ""


@dataclass
class _Piece:
    text: str
    tokens: int
    glue: str = "\n\n"  # what joins this piece to the one before it in the same chunk


@dataclass
class _Packer:
    budget: int
    done: list[str] = field(default_factory=list)
    current: list[_Piece] = field(default_factory=list)
    used: int = 0

    def add(self, piece: _Piece) -> None:
        join = PARAGRAPH_JOIN_COST if piece.glue else 0
        if self.current and self.used + join + piece.tokens > self.budget:
            self.flush()
        if self.current:
            self.used += join
        self.current.append(piece)
        self.used += piece.tokens

    def flush(self) -> None:
        if self.current:
            text = self.current[0].text + "".join(p.glue + p.text for p in self.current[1:])
            if text.strip():
                self.done.append(text.strip())
        self.current, self.used = [], 0


def _pack(section: list[md.Block], budget: int, count_tokens: CountTokens) -> list[str]:
    """Chunk bodies of one section: whole paragraphs and code blocks packed up to the budget."""
    counts = count_tokens([block.text for block in section])
    packer = _Packer(budget)
    for block, tokens in zip(section, counts, strict=True):
        if tokens <= budget or (block.kind == md.CODE and len(block.text) <= MAX_CODE_BLOCK_CHARS):
            packer.add(_Piece(block.text, tokens))
        elif block.kind == md.CODE:
            for text, n in _split_code(block, budget, count_tokens):
                packer.add(_Piece(text, n))
        else:
            for number, (text, n) in enumerate(_split_oversize(block.text, budget, count_tokens)):
                packer.add(_Piece(text, n, glue="\n\n" if number == 0 else ""))
    packer.flush()
    return packer.done


def _split_oversize(text: str, budget: int, count_tokens: CountTokens) -> Iterator[tuple[str, int]]:
    """Pieces of a too-long paragraph, each within budget, concatenating back to the text."""
    for window in _windows(text, _WINDOW_CHARS):
        yield from _split(window, budget, count_tokens, level=0)


def _split_code(block: md.Block, budget: int, count_tokens: CountTokens) -> Iterator[tuple[str, int]]:
    """A code block over MAX_CODE_BLOCK_CHARS as fenced pieces of its lines, each within budget."""
    match = _FENCE_RUN.match(block.text.lstrip())
    closing = match.group()[:MAX_FENCE_CHARS] if match else "```"  # a hostile fence may be megabytes long
    opening = closing + block.language[:MAX_FENCE_CHARS]
    room = max(budget - count_tokens([f"{opening}\n\n{closing}"])[0], 1)
    group: list[str] = []
    used = 0
    for piece, n in [*_split_oversize(block.code, room, count_tokens), ("", room + 1)]:  # sentinel flushes
        if group and used + n > room:
            body = "".join(group).strip("\n")
            if body.strip():
                text = f"{opening}\n{body}\n{closing}"
                yield text, count_tokens([text])[0]
            group, used = [], 0
        group.append(piece)
        used += n


def _split(text: str, budget: int, count_tokens: CountTokens, level: int) -> Iterator[tuple[str, int]]:
    if level == len(_CUTS):
        yield from _split_chars(text, budget, count_tokens)
        return
    parts = _cut(text, _CUTS[level])
    for part, n in zip(parts, count_tokens(parts), strict=True):
        if n <= budget:
            yield part, n
        else:
            yield from _split(part, budget, count_tokens, level + 1)


def _split_chars(text: str, budget: int, count_tokens: CountTokens) -> Iterator[tuple[str, int]]:
    """Last resort for a single 'word' over budget: halve it until each half fits."""
    n = count_tokens([text])[0]
    if n <= budget or len(text) <= 1:
        yield text, n
        return
    middle = len(text) // 2
    yield from _split_chars(text[:middle], budget, count_tokens)
    yield from _split_chars(text[middle:], budget, count_tokens)


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Slices of text ending after each match of the pattern; their concatenation is the text."""
    parts, start = [], 0
    for match in pattern.finditer(text):
        if match.end() > start and match.start() > start:
            parts.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        parts.append(text[start:])
    return parts


def _windows(text: str, size: int) -> Iterator[str]:
    """Slices of at most about `size` chars, cut at whitespace when there is any."""
    start = 0
    while len(text) - start > size:
        end = start + size
        space = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
        if space > start:
            end = space + 1
        yield text[start:end]
        start = end
    yield text[start:]


def _code_examples(section: list[md.Block], path: list[str], min_chars: int) -> Iterator[CodeExample]:
    """Long code blocks with the paragraphs right before and after them as context."""
    for position, block in enumerate(section):
        if block.kind != md.CODE or not min_chars <= len(block.code.strip()) <= MAX_CODE_BLOCK_CHARS:
            continue
        before = section[position - 1] if position > 0 else None
        after = section[position + 1] if position + 1 < len(section) else None
        context = [
            before.text[-CODE_CONTEXT_CHARS:] if before and before.kind == md.TEXT else "",
            after.text[:CODE_CONTEXT_CHARS] if after and after.kind == md.TEXT else "",
        ]
        yield CodeExample(
            index=0,
            code=block.code,
            language=block.language,
            context="\n\n".join(part for part in context if part),
            heading_path=list(path),
        )
