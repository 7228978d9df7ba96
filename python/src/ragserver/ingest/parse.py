"""Files to Documents: markdown, plain text, HTML, PDF and BEIR-style JSONL.

Parsers are generators so a large JSONL corpus or PDF streams through the ingest pipeline
one document at a time. Each Document carries `metadata["format"]`; the chunker treats
plain text as prose (no headings, no fences) and everything else as markdown.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from ragserver.domain import Document
from ragserver.errors import InputError
from ragserver.ingest import formats
from ragserver.ingest.blocks import first_heading
from ragserver.ingest.html import convert_html
from ragserver.ingest.pdf import pdf_pages

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?P<body>.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(?P<title>.+?)[ \t]*$", re.MULTILINE)
_FRONT_MATTER_MAX_CHARS = 10_000


def parse_bytes(data: bytes, filename: str, kind: str, content_type: str | None = None) -> Iterator[Document]:
    """Documents in one file's bytes of format `kind` (formats.detect_format); InputError for bad content.

    `content_type` only supplies a charset for text formats.
    """
    if kind == formats.JSONL:
        return parse_jsonl(io.BytesIO(data), filename)
    if kind == formats.PDF:
        return _parse_pdf(data, filename)
    return iter([_parse_text_document(data, filename, kind, content_type)])


def parse_file(path: Path, name: str, kind: str) -> Iterator[Document]:
    """Documents in a file on disk of format `kind`; `name` is the stable name used in urls (e.g. the
    path inside a folder).

    JSONL is read line by line from the file so a corpus of any size streams in flat memory.
    """
    if kind != formats.JSONL:
        return parse_bytes(path.read_bytes(), name, kind)
    return _jsonl_from_path(path, name)


def _jsonl_from_path(path: Path, name: str) -> Iterator[Document]:
    with path.open("rb") as lines:
        yield from parse_jsonl(lines, name)


def parse_jsonl(lines: Iterable[bytes], filename: str) -> Iterator[Document]:
    """One Document per `{"_id", "title", "text"}` line; a bad line raises InputError naming its number.

    url is `jsonl://<filename>#<_id>` and metadata carries `doc_id`, so evaluation code can map
    search hits back to the corpus ids.
    """
    for number, raw in enumerate(lines, start=1):
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace").strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise InputError(f"{filename} line {number}: not valid JSON ({_short(exc)})") from exc
        yield _jsonl_document(record, filename, number)


def _jsonl_document(record: object, filename: str, number: int) -> Document:
    where = f"{filename} line {number}"
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object with _id, title and text")
    doc_id, title, text = record.get("_id"), record.get("title", ""), record.get("text")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int) or str(doc_id) == "":
        raise InputError(f"{where}: '_id' must be a non-empty string or integer")
    if not isinstance(text, str):
        raise InputError(f"{where}: 'text' must be a string")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise InputError(f"{where}: 'title' must be a string")
    doc_id = formats.storable_text(str(doc_id))
    return Document(
        url=f"jsonl://{filename}#{quote(doc_id, safe='')}",
        title=formats.storable_text(title),
        markdown=formats.storable_text(text),
        metadata={"doc_id": doc_id, "format": formats.TEXT},
    )


def _parse_pdf(data: bytes, filename: str) -> Iterator[Document]:
    """One Document per PDF page with text, so hits can cite the page (url `<name>#page=N`)."""
    title, pages = pdf_pages(data, filename)
    title = title or _stem(filename)
    return (
        Document(
            url=f"{filename}#page={number}",
            title=title,
            markdown=text,
            metadata={"format": formats.TEXT, "page": number, "filename": filename},
        )
        for number, text in pages
    )


def _parse_text_document(data: bytes, filename: str, kind: str, content_type: str | None) -> Document:
    text = formats.decode_text(data, content_type)
    title = ""
    if kind == formats.HTML:
        converted = convert_html(text)
        title, text = converted.title, converted.markdown
    elif kind == formats.MARKDOWN:
        title, text = _split_front_matter(text)
        title = title or first_heading(text)
    return Document(
        url=filename,
        title=title or _stem(filename),
        markdown=text,
        metadata={"format": formats.TEXT if kind == formats.TEXT else formats.MARKDOWN, "filename": filename},
    )


def _split_front_matter(text: str) -> tuple[str, str]:
    """(title from YAML front matter or '', text without it): front matter is metadata, not content."""
    match = _FRONT_MATTER.match(text[:_FRONT_MATTER_MAX_CHARS])
    if not match:
        return "", text
    found = _FRONT_MATTER_TITLE.search(match.group("body"))
    title = found.group("title").strip("'\"") if found else ""
    return title, text[match.end() :]


def _stem(filename: str) -> str:
    return PurePosixPath(filename).stem or filename


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
