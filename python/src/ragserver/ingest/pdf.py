"""PDF text extraction with pypdf, one entry per page that has text.

pypdf raises a wide and version-dependent range of exceptions on damaged files (its own
PdfReadError, but also ValueError, KeyError, struct and zlib errors), so the reader is wrapped
whole and any failure becomes an InputError that says what to do; a bad upload is never a 500.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError

from ragserver.errors import InputError


def _open(data: bytes, filename: str) -> PdfReader:
    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise InputError(f"{filename}: not a PDF file (missing %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise FileNotDecryptedError("needs a password")
        len(reader.pages)
    except FileNotDecryptedError as exc:
        raise InputError(f"{filename}: the PDF is encrypted; upload a copy without a password") from exc
    except Exception as exc:
        raise InputError(f"{filename}: cannot read the PDF (damaged or truncated?): {exc}") from exc
    return reader


def pdf_title(reader: PdfReader) -> str:
    """The title from the PDF's metadata, or '' when it has none or it cannot be read."""
    try:
        meta = reader.metadata
        return str(meta.title).strip() if meta and meta.title else ""
    except Exception:
        return ""


def pdf_pages(data: bytes, filename: str) -> tuple[str, Iterator[tuple[int, str]]]:
    """(title, lazy iterator of (page number from 1, text)) for pages with extractable text.

    The file is opened eagerly so an encrypted or broken PDF fails before anything is
    yielded; a PDF without any text (a scan) raises InputError once all pages are seen.
    """
    reader = _open(data, filename)

    def pages() -> Iterator[tuple[int, str]]:
        found = False
        for number, page in enumerate(reader.pages, start=1):
            try:
                text = page.extract_text() or ""
            except Exception as exc:
                raise InputError(f"{filename}: cannot read page {number} of the PDF: {exc}") from exc
            if text.strip():
                found = True
                yield number, text
        if not found:
            raise InputError(f"{filename}: the PDF has no extractable text (scanned images need OCR first)")

    return pdf_title(reader), pages()
