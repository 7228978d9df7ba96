"""The one HTML-to-markdown path and its parts: main content, code fences, link words, link density.

The crawls of the fixture docs sites are in test_content_sites.py; the real Python docs (when
the python3.11-doc package is installed) are checked at the end of this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.api_fixtures import RunningApp

from ragserver.crawl.request import CrawlRequest
from ragserver.domain import Document
from ragserver.errors import InputError
from ragserver.ingest.chunk import chunk_document
from ragserver.ingest.content import ContentRules, check_selector
from ragserver.ingest.html import convert_html, whole_text
from ragserver.ingest.links import LINK_DENSE_MIN_CHARS, link_words

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")


def words(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


# -- link words -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("see [the guide](https://x.org/guide.html) now", "see the guide now"),
        ('[`argparse`](https://x.org/a.html#m "argparse: parsing") module', "`argparse` module"),
        ("![diagram of flow](img/flow.png) and [![logo](l.png)](https://x.org)", "diagram of flow and logo"),
        ("[wiki](https://en.wikipedia.org/wiki/Foo_(bar)) page", "wiki page"),
        ("[a [nested] text](u) end", "a [nested] text end"),
        ("[](https://icon.only)", ""),
        ("[ref words][1] here\n\n[1]: https://x.org/ref", "ref words here\n\n"),
        ("`[kept](https://in.code)` and [gone](https://x.org)", "`[kept](https://in.code)` and gone"),
        ("no links at all [just brackets] (and parens)", "no links at all [just brackets] (and parens)"),
        ("<https://autolink.example>", "<https://autolink.example>"),  # its words are the URL
    ],
)
def test_link_words_keep_text_and_drop_targets(markdown: str, expected: str) -> None:
    assert link_words(markdown) == expected


def test_chunks_carry_link_words_while_the_document_keeps_its_links() -> None:
    markdown = (
        "# [Install](https://x.org/install.html)\n\n"
        "Read the [setup notes](https://x.org/setup.html) first. ![a wiring diagram](https://x.org/w.png)\n\n"
        "```bash\ncurl https://x.org/get.sh  # [not a link](https://x.org/raw)\n```\n\n"
        "[![badge](https://x.org/badge.svg)](https://x.org/ci)\n"
    )
    doc = Document("u", "Guide", markdown)
    chunks, _ = chunk_document(doc, max_tokens=200, count_tokens=words)
    text = "\n".join(chunk.content for chunk in chunks)
    assert chunks[0].heading_path == ["Install"]
    assert "Read the setup notes first. a wiring diagram" in text
    assert "```bash\ncurl https://x.org/get.sh  # [not a link](https://x.org/raw)\n```" in text
    assert "badge" in text
    assert text.count("https://") == 2  # only the two inside the code block
    assert doc.markdown == markdown


def test_plain_text_documents_are_chunked_as_written() -> None:
    doc = Document("u", "", "a [bracketed](thing) in prose", {"format": "text"})
    chunks, _ = chunk_document(doc, max_tokens=50, count_tokens=words)
    assert chunks[0].content == "a [bracketed](thing) in prose"


# -- link density ---------------------------------------------------------------------------------


def entries(count: int, description: str = "") -> str:
    return "".join(f'<li><a href="/p{i}.html">Entry number {i} of the list</a>{description}</li>' for i in range(count))


def test_a_table_of_contents_is_link_dense_and_prose_with_links_is_not() -> None:
    toc = convert_html(f"<main><h1>Contents</h1><p>All chapters.</p><ul>{entries(40)}</ul></main>")
    assert toc.link_dense and toc.link_share > 0.9
    prose = " ".join(f"Sentence {i} mentions <a href='/x{i}'>a reference</a> among other words." for i in range(60))
    page = convert_html(f"<main><h1>Guide</h1><p>{prose}</p></main>")
    assert not page.link_dense and page.link_share < 0.4


def test_index_entries_count_whole_with_their_descriptions() -> None:
    """A module index row is a link and a description: the row counts as the entry it is."""
    rows = "".join(
        f"<tr><td><a href='/m{i}.html'><code>mod{i}</code></a></td><td><em>Tools for task number {i}.</em></td></tr>"
        for i in range(60)
    )
    index = convert_html(f"<div class='body' role='main'><h1>Module Index</h1><table>{rows}</table></div>")
    assert index.link_dense
    # the same rows starting with words instead: a reference table, not an index
    prose_rows = rows.replace("<td><a", "<td>see <a")
    assert not convert_html(f"<main><table>{prose_rows}</table></main>").link_dense


def test_a_crawl_that_only_follows_link_pages_gets_their_links_without_markdown() -> None:
    html = f"<main><h1>Contents</h1><ul>{entries(40)}</ul></main>"
    followed = convert_html(html, "https://x.org/", ContentRules(link_pages_markdown=False))
    assert followed.link_dense and followed.markdown == "" and len(followed.links) == 40
    assert "Entry number 39" in convert_html(html, "https://x.org/").markdown


def test_a_small_page_of_links_is_not_link_dense() -> None:
    small = convert_html(f"<main><ul>{entries(3)}</ul></main>")
    assert small.link_share > 0.9 and small.link_chars < LINK_DENSE_MIN_CHARS and not small.link_dense


def test_tutorial_like_index_with_prose_is_not_link_dense() -> None:
    prose = "<p>" + "This tutorial introduces the reader informally to the basic concepts. " * 10 + "</p>"
    page = convert_html(f"<main><h1>Tutorial</h1>{prose}<ul>{entries(40)}</ul></main>")
    assert 0.5 < page.link_share < 0.75 and not page.link_dense


# -- conversion -----------------------------------------------------------------------------------


def test_code_blocks_keep_language_text_and_a_fence_longer_than_their_backticks() -> None:
    html = (
        "<main><p>Example:</p>"
        '<div class="highlight-python3"><div class="highlight"><pre><span class="k">def</span> f():\n'
        "    return '[x](http://in.code)'</pre></div></div>"
        "<pre><code class='language-markdown'>````\nfenced\n````</code></pre>"
        "<ul><li>item with code:<pre>inside list</pre></li></ul></main>"
    )
    markdown = convert_html(html, "https://docs.example/page.html").markdown
    assert "```python3\ndef f():\n    return '[x](http://in.code)'\n```" in markdown
    assert "`````markdown\n````\nfenced\n````\n`````" in markdown
    assert "```\ninside list\n```" in markdown


def test_links_are_read_from_the_whole_page_before_the_cut() -> None:
    html = (
        "<html><head><base href='/docs/'></head><body><nav><a href='intro.html'>Intro</a>"
        "<a href='#top'>top</a><a href='mailto:a@b.c'>mail</a></nav>"
        "<main><p>Body text <a href='api.html#x'>api</a> <a href='api.html#y'>again</a></p></main></body></html>"
    )
    converted = convert_html(html, "https://site.example/docs/guide/page.html")
    assert converted.links == ["https://site.example/docs/intro.html", "https://site.example/docs/api.html"]
    assert "Intro" not in converted.markdown and "Body text" in converted.markdown


def test_title_is_the_page_title_else_the_first_heading() -> None:
    assert convert_html("<title> The  Title </title><main><h1>Heading</h1><p>x</p></main>").title == "The Title"
    assert convert_html("<main><h1>Heading <em>one</em></h1><p>x</p></main>").title == "Heading one"


def test_a_title_that_adds_the_sites_name_to_the_heading_is_the_heading() -> None:
    sphinx = (
        "<title>argparse — Parser — Python 3.11 documentation</title>"
        "<div class='body'><h1>argparse — Parser<a class='headerlink' href='#x'>¶</a></h1><p>x</p></div>"
    )
    assert convert_html(sphinx).title == "argparse — Parser"
    assert convert_html("<title>Guide | Site</title><main><h1>guide</h1><p>x</p></main>").title == "guide"
    assert convert_html("<title>Home | Site</title><main><h1>Welcome</h1><p>x</p></main>").title == "Home | Site"


def test_layout_preference_and_the_body_fallback() -> None:
    html = (
        "<body><header>Site banner</header><main><div class='theme-doc-markdown'><p>Docs body</p></div>"
        "<div class='extra'>Main extra</div></main><footer>Site footer</footer></body>"
    )
    assert convert_html(html).markdown == "Docs body"  # the framework's element beats <main>
    fallback = convert_html("<body><header>Banner</header><div><p>Loose text</p></div><aside>Ads</aside></body>")
    assert fallback.markdown == "Loose text"


def test_docutils_asides_are_content_and_other_asides_are_chrome() -> None:
    html = (
        "<div class='body' role='main'><p>Body words.</p><aside class='topic'><p>Abstract words</p></aside>"
        "<aside class='sidebar'><p class='sidebar-title'>Hello World sample</p></aside>"
        "<aside class='footnote-list'><aside class='footnote'>Footnote words</aside></aside>"
        "<aside class='admonition note'>Note words</aside><aside>Related posts</aside>"
        "<nav class='contents'>Local contents</nav></div>"
    )
    markdown = convert_html(html).markdown
    for kept in ("Body words", "Abstract words", "Hello World sample", "Footnote words", "Note words"):
        assert kept in markdown
    assert "Related posts" not in markdown and "Local contents" not in markdown


def test_several_articles_are_all_kept_once() -> None:
    html = "<body><article><p>First post</p><article><p>Nested</p></article></article><article>Second</article></body>"
    markdown = convert_html(html).markdown
    assert markdown.count("First post") == 1 and markdown.count("Nested") == 1 and "Second" in markdown


def test_content_rules_select_and_exclude() -> None:
    html = "<main><div id='a'><p>Alpha text</p><p class='ad'>Buy now</p></div><div id='b'>Beta text</div></main>"
    converted = convert_html(html, rules=ContentRules("#a", (".ad",)))
    assert converted.markdown == "Alpha text"


def test_oversized_html_is_refused() -> None:
    with pytest.raises(InputError, match="more than"):
        convert_html("<b>" * 500_001)


@pytest.mark.parametrize("html", ["", "   ", "<!-- only a comment -->", "<!doctype html>"])
def test_pages_without_text_convert_to_nothing(html: str) -> None:
    assert convert_html(html).markdown == ""


# -- selectors in crawl requests ------------------------------------------------------------------


@pytest.mark.parametrize("selector", ["div[", "::", "p >", "a[href=", "#"])
def test_check_selector_refuses_what_lxml_cannot_compile(selector: str) -> None:
    with pytest.raises(ValueError, match="not a valid CSS selector"):
        check_selector(selector)


def test_crawl_request_carries_its_content_rules() -> None:
    request = CrawlRequest(url="https://x.org", content_selector="div.doc", exclude_selectors=[".ad", "nav > ul"])
    assert request.content_rules() == ContentRules("div.doc", (".ad", "nav > ul"), link_pages_markdown=False)
    assert CrawlRequest(url="https://x.org", keep_link_pages=True).content_rules().link_pages_markdown
    assert request.options()["exclude_selectors"] == [".ad", "nav > ul"]  # a refresh repeats them
    with pytest.raises(InputError, match=r"content_selector.*not a valid CSS selector: 'div\['"):
        CrawlRequest.checked(url="https://x.org", content_selector="div[")


@pytest.mark.parametrize(
    "body",
    [
        {"content_selector": "div["},
        {"exclude_selectors": ["nav", "::bad"]},
        {"exclude_selectors": [""]},
        {"keep_link_pages": "sometimes"},
    ],
)
async def test_bad_content_options_answer_422_naming_the_field(api: RunningApp, body: dict[str, Any]) -> None:
    reply = await api.client.post("/api/knowledge-items/crawl", json={"url": "https://example.org", **body})
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "validation_error" and next(iter(body)) in reply.text


# -- the real Python docs -------------------------------------------------------------------------


@pytest.mark.skipif(not PYTHON_DOCS.is_dir(), reason="needs the python3.11-doc package")
@pytest.mark.parametrize(
    ("page", "dense"),
    [
        ("library/argparse.html", False),
        ("tutorial/index.html", False),
        ("genindex-all.html", True),
        ("contents.html", True),
        ("py-modindex.html", True),
    ],
)
def test_python_docs_pages_are_their_content_and_indexes_are_link_dense(page: str, dense: bool) -> None:
    html = (PYTHON_DOCS / page).read_text(encoding="utf-8")
    converted = convert_html(html, f"http://127.0.0.1:8000/{page}")
    assert converted.link_dense is dense
    head = converted.markdown[:2000]
    assert "modules |" not in head and "Table of Contents" not in head and "Quick search" not in converted.markdown
    assert "Theme" not in head and converted.markdown.startswith("#")


def test_a_pages_own_private_use_marks_never_break_the_conversion() -> None:
    page = "<main><h1>T</h1><p>\ue00299\ue003 and \ue0007\ue001</p><pre><code>x = 1</code></pre></main>"
    converted = convert_html(page)
    assert "99 and 7" in converted.markdown and "```\nx = 1\n```" in converted.markdown
    assert link_words("[a](b) \ue0007\ue001 `c`") == "a 7 `c`"


def test_a_class_that_only_contains_breadcrumb_is_content() -> None:
    page = "<main><h1>Guide</h1><div class='page has-breadcrumbs'><p>The whole guide text.</p></div></main>"
    assert "The whole guide text." in convert_html(page).markdown


def test_a_body_wrapped_in_a_form_keeps_its_text_in_paragraphs() -> None:
    page = "<body><form action='/x'><h1>Title</h1><p>Body text here.</p><input name='q'></form></body>"
    markdown = convert_html(page).markdown
    assert "Title" in markdown and "Body text here." in markdown and "TitleBody" not in markdown
    assert whole_text("<div><h1>T</h1><p>Body</p></div>") == "T\n\nBody"
