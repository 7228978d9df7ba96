"""Which parser a file needs, decided from its name first and its declared content type second.

Extensions win because browsers and curl often send `application/octet-stream` for everything;
the content type only rescues names without a known extension. Anything else is refused
with UnsupportedMediaType (415) before any work starts.
"""

from __future__ import annotations

import codecs
import contextlib
from pathlib import PurePosixPath

from ragserver.errors import UnsupportedMediaType

MARKDOWN = "markdown"
TEXT = "text"
HTML = "html"
PDF = "pdf"
JSONL = "jsonl"

_BY_EXTENSION = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".mdx": MARKDOWN,
    ".txt": TEXT,
    ".text": TEXT,
    ".rst": TEXT,
    ".html": HTML,
    ".htm": HTML,
    ".xhtml": HTML,
    ".pdf": PDF,
    ".jsonl": JSONL,
    ".ndjson": JSONL,
}

_BY_CONTENT_TYPE = {
    "text/markdown": MARKDOWN,
    "text/x-markdown": MARKDOWN,
    "text/plain": TEXT,
    "text/html": HTML,
    "application/xhtml+xml": HTML,
    "application/pdf": PDF,
    "application/jsonl": JSONL,
    "application/x-ndjson": JSONL,
    "application/x-jsonlines": JSONL,
}

SUPPORTED_EXTENSIONS = tuple(sorted(_BY_EXTENSION))


def detect_format(filename: str, content_type: str | None = None) -> str:
    """The format name for this file, or UnsupportedMediaType naming what is accepted.

    Callers detect once, before any work starts, and pass the result to the parser.
    """
    kind = format_of(filename)
    if kind is not None:
        return kind
    media = (content_type or "").split(";")[0].strip().lower()
    if media in _BY_CONTENT_TYPE:
        return _BY_CONTENT_TYPE[media]
    raise UnsupportedMediaType(
        f"cannot ingest {filename!r}: unsupported file type; accepted: {', '.join(SUPPORTED_EXTENSIONS)}",
        details={"filename": filename, "content_type": content_type},
    )


def format_of(filename: str) -> str | None:
    """The format its extension names, or None (a folder walk skips such files)."""
    return _BY_EXTENSION.get(PurePosixPath(filename.replace("\\", "/")).suffix.lower())


def decode_text(data: bytes, content_type: str | None = None) -> str:
    """Bytes to str: the declared charset if Python knows it, else UTF-8; bad bytes become U+FFFD.

    Never raises on bad input: a stray byte in a user's file must not fail the whole upload.
    """
    encoding = "utf-8-sig"
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            with contextlib.suppress(LookupError):
                encoding = codecs.lookup(value.strip().strip('"')).name
    if encoding == "utf-8":
        encoding = "utf-8-sig"
    return data.decode(encoding, errors="replace")


def storable_text(text: str) -> str:
    """Text Postgres accepts: NUL characters dropped, lone surrogates (from JSON escapes) replaced."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="replace").decode("utf-8")
    return text
