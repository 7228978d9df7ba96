"""Parsers: every accepted format from real bytes, and every kind of bad input as a clear 4xx error."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from ragserver.domain import Document
from ragserver.errors import InputError, UnsupportedMediaType
from ragserver.ingest.files import FolderScan, path_source_id, safe_filename, upload_source_id, walk_folder
from ragserver.ingest.formats import detect_format, format_of
from ragserver.ingest.parse import parse_bytes, parse_file


def make_pdf(pages: list[list[str]], title: str | None = None) -> bytes:
    """A minimal valid PDF (Helvetica text, one line per string) written by hand, with a correct xref."""
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects = {
        1: "<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] /Count {len(pages)} >>",
        3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for page_id, lines in zip(page_ids, pages, strict=True):
        escaped = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines]
        ops = "BT /F1 12 Tf 14 TL 72 720 Td " + " ".join(f"({line}) Tj T*" for line in escaped) + " ET"
        objects[page_id] = (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        )
        objects[page_id + 1] = f"<< /Length {len(ops)} >>\nstream\n{ops}\nendstream"
    info = ""
    if title:
        info_id = max(objects) + 1
        objects[info_id] = f"<< /Title ({title}) >>"
        info = f" /Info {info_id} 0 R"
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n{objects[number]}\nendobj\n".encode("latin-1")
    xref = len(out)
    size = max(objects) + 1
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offsets[n]:010d} 00000 n \n" for n in range(1, size)).encode()
    out += f"trailer\n<< /Size {size} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def parse(data: bytes, filename: str, content_type: str | None = None) -> Iterator[Document]:
    """parse_bytes of the format detected from the name (and type), as the ingest service does."""
    return parse_bytes(data, filename, detect_format(filename, content_type), content_type)


def encrypt(pdf: bytes, password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(password)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# -- type detection -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("a.md", None, "markdown"),
        ("A.MARKDOWN", None, "markdown"),
        ("notes.txt", "application/octet-stream", "text"),
        ("page.htm", None, "html"),
        ("paper.pdf", None, "pdf"),
        ("corpus.jsonl", None, "jsonl"),
        ("README", "text/markdown; charset=utf-8", "markdown"),
        ("upload", "application/pdf", "pdf"),
        ("x.md", "application/pdf", "markdown"),  # the extension wins
    ],
)
def test_detect_format(filename: str, content_type: str | None, expected: str) -> None:
    assert detect_format(filename, content_type) == expected


@pytest.mark.parametrize(("filename", "content_type"), [("image.png", None), ("x.exe", "application/octet-stream")])
def test_unknown_type_is_415(filename: str, content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        detect_format(filename, content_type)
    assert info.value.status_code == 415
    assert ".md" in info.value.message
    assert format_of(filename) is None


# -- markdown and text ---------------------------------------------------------------------------


def test_markdown_title_from_first_h1_not_from_a_code_comment() -> None:
    data = b"```bash\n# install\n```\n\n# Real Title\n\nBody text.\n"
    (doc,) = parse(data, "guide.md")
    assert doc.title == "Real Title"
    assert doc.url == "guide.md"
    assert doc.markdown == data.decode()
    assert doc.metadata["format"] == "markdown"


def test_markdown_front_matter_gives_title_and_is_not_content() -> None:
    data = b"---\ntitle: 'From Front Matter'\nsidebar: 2\n---\n# Heading\n\nText.\n"
    (doc,) = parse(data, "page.mdx")
    assert doc.title == "From Front Matter"
    assert doc.markdown.startswith("# Heading")


def test_text_title_is_the_file_stem_and_format_is_text() -> None:
    (doc,) = parse(b"# not a heading in a text file\n", "docs/notes.txt")
    assert doc.title == "notes"
    assert doc.metadata["format"] == "text"


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    (doc,) = parse(b"# Caf\xe9 \xff\xfe ok\n\nbody \x80\n", "bad.md")
    assert "\ufffd" in doc.markdown
    assert doc.markdown.endswith("body \ufffd\n")


def test_declared_charset_is_honoured() -> None:
    (doc,) = parse("Café".encode("latin-1"), "note", "text/plain; charset=iso-8859-1")
    assert doc.markdown == "Café"


def test_utf8_bom_is_dropped() -> None:
    (doc,) = parse(b"\xef\xbb\xbf# Title\n", "bom.md")
    assert doc.markdown == "# Title\n"
    assert doc.title == "Title"


# -- HTML -------------------------------------------------------------------------------------------

HTML = b"""<!doctype html><html><head><title>Widget Guide</title><style>.x{color:red}</style>
<script>var tracking = 1;</script></head><body>
<nav><a href="/">Home</a> | <a href="/docs">Docs</a></nav>
<header><div class="logo">SiteLogo</div></header>
<main>
<h1>Widgets</h1><p>Widgets are <strong>small</strong> parts.</p>
<h2>Install</h2>
<pre><code class="language-python">import widget

widget.install(&quot;fast&quot;)
</code></pre>
<div class="highlight-bash notranslate"><div class="highlight"><pre><span></span>pip install widget</pre></div></div>
<pre><code>x = "```"</code></pre>
<h3>Options</h3><ul><li>alpha</li><li>beta</li></ul>
</main>
<footer>Copyright SiteFooter</footer>
</body></html>"""


def test_html_becomes_markdown_with_headings_and_fenced_code() -> None:
    (doc,) = parse(HTML, "widgets.html")
    md = doc.markdown
    assert doc.title == "Widget Guide"
    assert doc.metadata["format"] == "markdown"
    assert "# Widgets" in md and "## Install" in md and "### Options" in md
    assert '```python\nimport widget\n\nwidget.install("fast")\n```' in md
    assert "```bash\npip install widget\n```" in md
    assert '````\nx = "```"\n````' in md  # the fence grows around code containing a fence
    assert "- alpha" in md
    for chrome in ("tracking", "color:red", "Home", "SiteLogo", "SiteFooter"):
        assert chrome not in md


def test_html_title_falls_back_to_h1_then_filename() -> None:
    (doc,) = parse(b"<body><h1>Only Heading</h1><p>x</p></body>", "a.html")
    assert doc.title == "Only Heading"
    (doc,) = parse(b"<p>just text</p>", "b.html")
    assert doc.title == "b"


def test_deeply_nested_html_does_not_crash() -> None:
    depth = 5000
    data = b"<div>" * depth + b"deep content" + b"</div>" * depth
    (doc,) = parse(data, "deep.html")
    assert "deep content" in doc.markdown


# -- PDF -------------------------------------------------------------------------------------------


def test_pdf_one_document_per_page_with_text() -> None:
    data = make_pdf([["Hello from page one.", "Second line (with parens)."], [], ["Page three."]], title="Manual")
    docs = list(parse(data, "manual.pdf"))
    assert [d.url for d in docs] == ["manual.pdf#page=1", "manual.pdf#page=3"]
    assert all(d.title == "Manual" for d in docs)
    assert "Hello from page one." in docs[0].markdown
    assert "Second line (with parens)." in docs[0].markdown
    assert docs[1].metadata == {"format": "text", "page": 3, "filename": "manual.pdf"}


def test_pdf_without_title_uses_the_file_stem() -> None:
    (doc,) = parse(make_pdf([["text"]]), "report-2024.pdf")
    assert doc.title == "report-2024"


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (encrypt(make_pdf([["secret"]]), "pw"), "encrypted"),
        (make_pdf([["cut short"]])[:120], "damaged or truncated"),
        (b"%PDF-1.7\n" + b"\x00garbage" * 50, "damaged or truncated"),
        (b"<html>not a pdf</html>", "not a PDF"),
        (make_pdf([[], []]), "no extractable text"),
    ],
    ids=["encrypted", "truncated", "garbage", "not-pdf", "no-text"],
)
def test_bad_pdf_is_a_clear_input_error(data: bytes, phrase: str) -> None:
    with pytest.raises(InputError) as info:
        list(parse(data, "bad.pdf"))
    assert phrase in info.value.message
    assert "bad.pdf" in info.value.message
    assert info.value.status_code == 400


def test_pdf_encrypted_with_empty_user_password_is_read() -> None:
    (doc,) = parse(encrypt(make_pdf([["owner-locked text"]]), ""), "locked.pdf")
    assert "owner-locked text" in doc.markdown


# -- JSONL -------------------------------------------------------------------------------------------


def jsonl(*records: object) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


def test_jsonl_beir_corpus() -> None:
    data = jsonl(
        {"_id": "d1", "title": "First", "text": "Alpha text."},
        "",
        {"_id": 42, "title": "", "text": "Numeric id."},
        {"_id": "a b/c", "text": "No title field.", "metadata": {}},
    )
    docs = list(parse(data, "corpus.jsonl"))
    assert [d.metadata["doc_id"] for d in docs] == ["d1", "42", "a b/c"]
    assert [d.url for d in docs] == [
        "jsonl://corpus.jsonl#d1",
        "jsonl://corpus.jsonl#42",
        "jsonl://corpus.jsonl#a%20b%2Fc",
    ]
    assert docs[0].title == "First" and docs[0].markdown == "Alpha text."
    assert docs[2].title == ""
    assert all(d.metadata["format"] == "text" for d in docs)


@pytest.mark.parametrize(
    ("bad_line", "phrase"),
    [
        ('{"_id": "x", "text": ', "not valid JSON"),
        ('["_id", "text"]', "expected a JSON object"),
        ('{"_id": "x"}', "'text' must be a string"),
        ('{"text": "no id"}', "'_id'"),
        ('{"_id": true, "text": "bool id"}', "'_id'"),
        ('{"_id": "x", "title": 5, "text": "t"}', "'title' must be a string"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
    ids=["truncated", "array", "no-text", "no-id", "bool-id", "title-type", "deep-nesting"],
)
def test_bad_jsonl_line_names_its_number(bad_line: str, phrase: str) -> None:
    data = jsonl({"_id": "ok", "text": "fine"}, "", bad_line, {"_id": "after", "text": "never read"})
    docs = parse(data, "c.jsonl")
    assert next(docs).metadata["doc_id"] == "ok"  # lines before the bad one are already usable
    with pytest.raises(InputError) as info:
        next(docs)
    assert "c.jsonl line 3" in info.value.message
    assert phrase in info.value.message


def test_jsonl_text_postgres_cannot_store_is_cleaned() -> None:
    (doc,) = parse(b'{"_id": "n\\u0000", "text": "a\\u0000b \\ud800 c"}', "x.jsonl")
    assert doc.markdown == "ab ? c"
    assert doc.metadata["doc_id"] == "n"
    doc.markdown.encode("utf-8")


def test_jsonl_invalid_utf8_is_replaced() -> None:
    (doc,) = parse(b'{"_id": "1", "text": "caf\xe9"}', "x.jsonl")
    assert doc.markdown == "caf\ufffd"


def test_jsonl_file_is_streamed_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w") as handle:
        for i in range(5000):
            handle.write(json.dumps({"_id": str(i), "text": f"doc {i}"}) + "\n")
    docs = parse_file(path, "big.jsonl", "jsonl")
    first = next(docs)
    assert first.metadata["doc_id"] == "0"
    assert sum(1 for _ in docs) == 4999


# -- names and folders ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "safe"),
    [("../../etc/passwd.md", "passwd.md"), ("C:\\Users\\me\\notes.txt", "notes.txt"), ("a\x00b\n.md", "ab.md")],
)
def test_safe_filename_keeps_the_base_name_only(raw: str, safe: str) -> None:
    assert safe_filename(raw) == safe


@pytest.mark.parametrize("raw", ["", "..", "a/..", "  ", "/"])
def test_safe_filename_refuses_empty_names(raw: str) -> None:
    with pytest.raises(InputError):
        safe_filename(raw)


def test_source_ids_are_stable_and_distinct(tmp_path: Path) -> None:
    assert upload_source_id("Guide.md") == upload_source_id("Guide.md")
    assert upload_source_id("Guide.md") != upload_source_id("guide.md")
    assert upload_source_id("Guide.md").startswith("upload-guide-md-")
    (tmp_path / "docs").mkdir()
    assert path_source_id(tmp_path / "docs") == path_source_id(tmp_path / "docs" / ".." / "docs")
    assert path_source_id(tmp_path / "docs") != path_source_id(tmp_path)


def test_walk_folder_skips_unsupported_hidden_and_escaping_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a.md").write_text("a")
    (root / "sub" / "b.txt").write_text("b")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / ".git" / "c.md").write_text("hidden")
    outside = tmp_path / "secret.md"
    outside.write_text("secret")
    (root / "escape.md").symlink_to(outside)
    (root / "inside-link.md").symlink_to(root / "a.md")
    (root / "linked-dir").symlink_to(tmp_path)
    scan = FolderScan()
    names = [name for _, name, _ in walk_folder(root, scan)]
    assert names == ["a.md", "inside-link.md", "sub/b.txt"]
    assert (scan.unsupported, scan.outside) == (1, 1)
