"""Chunker invariants, checked on generated markdown (hypothesis) and with the real MiniLM tokenizer.

Invariants: fences are never split, all text survives in order, chunks fit the token budget
(only a lone code block may exceed it), and every chunk carries the heading path of its section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from ragserver.domain import Chunk, Document
from ragserver.ingest.blocks import iter_blocks
from ragserver.ingest.chunk import SPECIAL_TOKENS_RESERVE, chunk_document, context_line


def words(texts: list[str]) -> list[int]:
    """A whitespace tokenizer: additive, no special tokens."""
    return [len(t.split()) for t in texts]


def words_with_specials(texts: list[str]) -> list[int]:
    """Like a HF tokenizer with add_special_tokens=True: two more per text."""
    return [len(t.split()) + 2 for t in texts]


def body_of(chunk: Chunk, title: str) -> str:
    """The chunk without its context line (which may have lost outer parts, or be gone, when long)."""
    parts = [title, *chunk.heading_path]
    for start in range(len(parts)):
        context = context_line(parts[start], parts[start + 1 :])
        if context and chunk.content.startswith(context + "\n\n"):
            return chunk.content[len(context) + 2 :]
    return chunk.content


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# -- a model of markdown documents ------------------------------------------------------------------


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    words: int
    sentence_every: int


@dataclass
class Code:
    marker: str
    language: str
    lines: list[str]


_code_line = st.text(alphabet="abc #=-~_()", max_size=30).filter(lambda s: not set(s.strip()) <= set("~`"))
_element = st.one_of(
    st.builds(Heading, st.integers(1, 4), st.text(alphabet="abcdefgh ", min_size=1, max_size=15).map(str.strip)),
    st.builds(Para, st.integers(1, 60), st.integers(1, 12)),
    st.builds(
        Code,
        st.sampled_from(["```", "~~~", "````"]),
        st.sampled_from(["", "python", "bash"]),
        st.lists(_code_line, max_size=25),
    ),
)


@dataclass
class Rendered:
    markdown: str
    bodies: list[str]  # text of each paragraph / code block, in order
    paths: list[list[str]]  # expected heading path of each body
    codes: list[str]


def render(elements: list) -> Rendered:
    parts, bodies, paths, codes = [], [], [], []
    stack: list[tuple[int, str]] = []
    counter = 0
    for element in elements:
        if isinstance(element, Heading):
            if not element.text:
                continue
            parts.append("#" * element.level + " " + element.text)
            while stack and stack[-1][0] >= element.level:
                stack.pop()
            stack.append((element.level, element.text))
            continue
        if isinstance(element, Para):
            tokens = []
            for i in range(element.words):
                counter += 1
                tokens.append(f"w{counter}" + ("." if (i + 1) % element.sentence_every == 0 else ""))
            text = " ".join(tokens)
        else:
            counter += 1
            text = "\n".join([element.marker + element.language, f"c{counter}", *element.lines, element.marker])
            codes.append(text)
        parts.append(text)
        bodies.append(text)
        paths.append([t for _, t in stack])
    return Rendered("\n\n".join(parts) + "\n", bodies, paths, codes)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    elements=st.lists(_element, max_size=25),
    max_tokens=st.integers(6, 80),
    title=st.sampled_from(["", "Doc"]),
    counter=st.sampled_from([words, words_with_specials]),
)
def test_chunk_invariants(elements: list, max_tokens: int, title: str, counter) -> None:
    doc = render(elements)
    chunks, _ = chunk_document(Document("u", title, doc.markdown), max_tokens=max_tokens, count_tokens=counter)
    bodies = [body_of(chunk, title) for chunk in chunks]

    # all non-whitespace text survives, in order (headings live in the context line)
    assert squash("".join(bodies)) == squash("".join(doc.bodies))

    # fences are never split: each code block sits whole inside one chunk
    for code in doc.codes:
        assert sum(code in body for body in bodies) >= 1, code

    # sizes: within budget unless the chunk is one oversize code block
    for chunk, body in zip(chunks, bodies, strict=True):
        size = words([chunk.content])[0] + SPECIAL_TOKENS_RESERVE
        if size > max_tokens:
            assert body in doc.codes, (max_tokens, chunk.content)

    # heading paths: every body's words are in chunks of its section
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for text, path in zip(doc.bodies, doc.paths, strict=True):
        first = re.search(r"\b[wc]\d+\b", text).group(0)  # each body's unique id
        holders = [c for c, b in zip(chunks, bodies, strict=True) if re.search(rf"\b{first}\b", b)]
        assert holders, first
        assert all(c.heading_path == path for c in holders), (first, path, [c.heading_path for c in holders])


# -- specific behaviours ---------------------------------------------------------------------------------

GUIDE = """# Widget

Widgets are small.

## Install

Run the installer first.

```bash
pip install widget
# this comment is not a heading
```

## Usage

### Basics

Call it.
"""


def test_sections_paths_and_context_line() -> None:
    chunks, _ = chunk_document(Document("u", "Widget", GUIDE), max_tokens=200, count_tokens=words)
    assert [c.heading_path for c in chunks] == [["Widget"], ["Widget", "Install"], ["Widget", "Usage", "Basics"]]
    assert chunks[0].content == "Widget\n\nWidgets are small."  # the H1 equal to the title is not repeated
    assert chunks[1].content.startswith("Widget > Install\n\nRun the installer first.\n\n```bash")
    assert "# this comment is not a heading\n```" in chunks[1].content
    assert chunks[2].content == "Widget > Usage > Basics\n\nCall it."


def test_oversize_code_block_stays_whole() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = {i}" for i in range(200)) + "\n```"
    text = f"# T\n\nBefore.\n\n{code}\n\nAfter."
    chunks, _ = chunk_document(Document("u", "T", text), max_tokens=30, count_tokens=words)
    assert [c.content for c in chunks] == ["T\n\nBefore.", f"T\n\n{code}", "T\n\nAfter."]


def test_unclosed_fence_runs_to_the_end() -> None:
    text = "Intro.\n\n```\ncode line\n\n# not heading\n\nmore"
    chunks, _ = chunk_document(Document("u", "", text), max_tokens=100, count_tokens=words)
    assert chunks[-1].content.endswith("```\ncode line\n\n# not heading\n\nmore")
    assert all(c.heading_path == [] for c in chunks)


def test_long_paragraph_splits_at_sentences_first() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(30)]
    chunks, _ = chunk_document(Document("u", "", " ".join(sentences)), max_tokens=22, count_tokens=words)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.content.endswith("here."), chunk.content
        assert words([chunk.content])[0] <= 20


def test_hostile_single_word_is_cut_to_size() -> None:
    blob = "x" * 400_000

    def estimate(texts: list[str]) -> list[int]:
        return [len(t) // 4 for t in texts]

    chunks, _ = chunk_document(Document("u", "", blob), max_tokens=256, count_tokens=estimate)
    assert "".join(c.content for c in chunks) == blob
    assert max(estimate([c.content for c in chunks])) <= 254


def test_text_format_has_no_headings_or_fences() -> None:
    text = "# not a heading\n\n```\nnot code\n\nstill prose\n"
    doc = Document("u", "notes", text, metadata={"format": "text"})
    chunks, examples = chunk_document(doc, max_tokens=5, count_tokens=words, code_min_chars=1)
    assert examples == []
    assert all(c.heading_path == [] for c in chunks)
    assert squash("".join(body_of(c, "notes") for c in chunks)) == squash(text)


def test_empty_heading_closes_sections_without_an_empty_path_entry() -> None:
    text = "# A\n\n## B\n\nin b\n\n##\n\nafter empty"
    chunks, _ = chunk_document(Document("u", "", text), max_tokens=50, count_tokens=words)
    assert [c.heading_path for c in chunks] == [["A", "B"], ["A"]]


def test_corpus_id_and_pdf_page_are_carried_onto_chunks() -> None:
    doc = Document("u", "t", "one\n\ntwo", metadata={"format": "text", "doc_id": "d7", "page": 3, "filename": "f"})
    chunks, _ = chunk_document(doc, max_tokens=4, count_tokens=words)
    assert len(chunks) == 2
    assert all(c.metadata == {"doc_id": "d7", "page": 3} for c in chunks)


def test_long_title_context_is_dropped_rather_than_crowding_out_text() -> None:
    title = " ".join(["title"] * 40)
    chunks, _ = chunk_document(Document("u", title, "# H\n\nbody words here"), max_tokens=40, count_tokens=words)
    assert chunks[0].content == "H\n\nbody words here"


def test_code_examples_with_context_language_and_path() -> None:
    long_code = "\n".join(f"print({i})" for i in range(40))
    text = f"""# API

## Printing

Here is how to print numbers.

```python
{long_code}
```

That prints forty lines.

```
short
```
"""
    chunks, examples = chunk_document(
        Document("u", "API", text), max_tokens=500, count_tokens=words, code_min_chars=100
    )
    assert len(examples) == 1
    example = examples[0]
    assert example.index == 0
    assert example.code == long_code
    assert example.language == "python"
    assert example.context == "Here is how to print numbers.\n\nThat prints forty lines."
    assert example.heading_path == ["API", "Printing"]
    assert long_code in chunks[0].content  # code examples are also in the chunks


def test_setext_headings_and_closing_hashes() -> None:
    text = "Title\n=====\n\nIntro.\n\nPart ##\n-----\n\nBody.\n\n## Next ##\n\nEnd."
    kinds = [(b.kind, b.text, b.level) for b in iter_blocks(text)]
    assert kinds == [
        ("heading", "Title", 1),
        ("text", "Intro.", 0),
        ("heading", "Part ##", 2),
        ("text", "Body.", 0),
        ("heading", "Next", 2),
        ("text", "End.", 0),
    ]


@pytest.fixture(scope="module")
def minilm_tokens(minilm_dir: Path):
    tokenizer = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(texts: list[str]) -> list[int]:  # with [CLS]/[SEP], as ml.count_tokens counts
        return [len(e.ids) for e in tokenizer.encode_batch(texts)]

    return count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    paragraphs=st.lists(
        st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=400),
        min_size=1,
        max_size=12,
    ),
    max_tokens=st.integers(16, 128),
)
def test_chunks_fit_the_real_tokenizer(minilm_tokens, paragraphs: list[str], max_tokens: int) -> None:
    text = "\n\n".join(paragraphs)
    chunks, _ = chunk_document(
        Document("u", "", text, metadata={"format": "text"}), max_tokens=max_tokens, count_tokens=minilm_tokens
    )
    for chunk in chunks:
        assert minilm_tokens([chunk.content])[0] <= max_tokens, chunk.content
    assert squash("".join(c.content for c in chunks)) == squash(text)
