"""File names, folders and upload bytes: safe upload names, stable source ids, the walk over a
folder, and reading an upload up to the size limit.

Source ids derive from names, not from content or time, so ingesting the same file or folder
again replaces that source (a new generation) instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ragserver.domain import Document
from ragserver.errors import InputError, PayloadTooLarge
from ragserver.ingest.formats import format_of
from ragserver.ingest.parse import parse_file
from ragserver.ingest.ports import UploadStream

MAX_FILENAME_CHARS = 255
READ_CHUNK_BYTES = 1024 * 1024
MAX_REPORTED_ERRORS = 20
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_SLUG = re.compile(r"[^a-z0-9]+")

log = logging.getLogger(__name__)


def safe_filename(filename: str) -> str:
    """The base name of an uploaded file, without directories, control characters or dot-only names.

    Clients may send `../../etc/passwd` or `C:\\x\\y.md`; only the last component is kept.
    """
    name = PurePosixPath(filename.replace("\\", "/")).name
    name = _UNSAFE.sub("", unicodedata.normalize("NFC", name)).strip()
    if not name or set(name) == {"."}:
        raise InputError(f"invalid file name {filename!r}")
    if len(name) > MAX_FILENAME_CHARS:
        stem, suffix = os.path.splitext(name)
        name = stem[: MAX_FILENAME_CHARS - len(suffix)] + suffix
    return name


def _source_id(prefix: str, name: str, key: str) -> str:
    slug = _SLUG.sub("-", name.lower()).strip("-")[:40] or "source"
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{prefix}-{slug}-{digest}"


def upload_source_id(filename: str) -> str:
    """Source id of an uploaded file: readable slug + hash of the (sanitized) name."""
    return _source_id("upload", filename, filename)


def path_source_id(path: Path) -> str:
    """Source id of a file or folder ingested from disk: keyed by its resolved absolute path."""
    resolved = path.resolve()
    return _source_id("path", resolved.name, str(resolved))


@dataclass
class FolderScan:
    """What a folder walk skipped, reported in the ingest result."""

    unsupported: int = 0
    outside: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first MAX_REPORTED_ERRORS messages


def walk_folder(root: Path, scan: FolderScan) -> Iterator[tuple[Path, str, str]]:
    """(file, name relative to root, format) for every supported file below root, sorted, lazily.

    Symlinked files are followed only when they resolve inside root; symlinked folders are
    never entered (no loops, no escaping the folder the user named); hidden folders are skipped.
    """
    root = root.resolve()
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .git, .venv, ...
        for name in sorted(files):
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                scan.outside += 1
                continue
            if not path.is_file():
                continue
            kind = format_of(name)
            if kind is None:
                scan.unsupported += 1
                continue
            yield path, relative, kind


def file_documents(path: Path, name: str, kind: str) -> Iterator[Document]:
    """The documents of one file, parsed on the first pull (so in the pipeline's worker thread)."""
    yield from parse_file(path, name, kind)


def folder_documents(root: Path, scan: FolderScan) -> Iterator[Document]:
    """Documents of every supported file below root; a file that fails to parse is counted and skipped.

    A JSONL file that breaks at line N keeps the documents of its first N-1 lines.
    """
    for path, name, kind in walk_folder(root, scan):
        try:
            yield from parse_file(path, name, kind)
        except (InputError, OSError) as exc:
            message = exc.message if isinstance(exc, InputError) else f"{name}: {exc}"
            log.warning("skipping %s: %s", name, message)
            scan.failed += 1
            if len(scan.errors) < MAX_REPORTED_ERRORS:
                scan.errors.append(message)


async def read_upload(stream: UploadStream, name: str, limit_mb: int) -> bytes:
    """The whole upload, or PayloadTooLarge as soon as it passes MAX_UPLOAD_MB (the one place that rule lives).

    Reading stops at the limit, so a larger file is never held in memory.
    """
    limit = limit_mb * 1024 * 1024
    parts: list[bytes] = []
    size = 0
    while part := await stream.read(READ_CHUNK_BYTES):
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"{name} is larger than MAX_UPLOAD_MB={limit_mb}")
        parts.append(part)
    return b"".join(parts)
