"""Random and hostile files through parsers, chunker, discovery and the store: a clear error or content.

- hypothesis: random bytes under every file type, and random markdown made of the characters the
  block scanner and the link/fence patterns react to; only our own errors may come out.
- python/reliability/hostile_inputs.py at a small scale (a child process under an address-space
  limit): huge lines, deep nesting, bombs, truncated PDFs, regex traps, each bounded in time and RSS.
- the inputs that once failed at the database (a code block too big for a tsvector, a huge heading,
  NUL bytes, lone surrogates) ingested into the real Postgres.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragserver.config import Settings
from ragserver.domain import SourceInfo
from ragserver.errors import RagServerError
from ragserver.ingest.chunk import chunk_document
from ragserver.ingest.formats import detect_format
from ragserver.ingest.parse import parse_bytes
from ragserver.ingest.service import IngestService
from ragserver.ml.service import MLService, estimate_tokens
from ragserver.progress import ProgressTracker

HOSTILE = Path(__file__).resolve().parents[1] / "reliability" / "hostile_inputs.py"
EXTENSIONS = ["md", "txt", "html", "pdf", "jsonl"]
MARKDOWN_ALPHABET = "`~#[]()<>!*-_=|\\\"' .\n\t\rab1"
MAX_TOKENS = 64


def _count(texts: list[str]) -> list[int]:
    return [estimate_tokens(t) for t in texts]


def _parse_and_chunk(data: bytes, filename: str) -> int:
    chunks = 0
    for doc in parse_bytes(data, filename, detect_format(filename)):
        chunks += len(chunk_document(doc, max_tokens=MAX_TOKENS, count_tokens=_count)[0])
    return chunks


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096), ext=st.sampled_from(EXTENSIONS), prefix=st.sampled_from([b"", b"%PDF-1.4\n"]))
def test_random_bytes_give_content_or_our_error(data: bytes, ext: str, prefix: bytes) -> None:
    try:
        _parse_and_chunk(prefix + data, f"fuzz.{ext}")
    except RagServerError as exc:
        assert exc.status_code < 500 and exc.message


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=MARKDOWN_ALPHABET, max_size=3000), ext=st.sampled_from(["md", "html", "txt"]))
def test_random_markup_chunks_within_budget(text: str, ext: str) -> None:
    """Every chunk fits the budget, except a code block kept whole (a fenced chunk)."""
    for doc in parse_bytes(text.encode(), f"fuzz.{ext}", detect_format(f"fuzz.{ext}")):
        for chunk in chunk_document(doc, max_tokens=MAX_TOKENS, count_tokens=_count)[0]:
            assert chunk.content.strip()
            assert _count([chunk.content])[0] <= MAX_TOKENS or "```" in chunk.content or "~~~" in chunk.content


def test_hostile_inputs_small_scale() -> None:
    result = subprocess.run(
        [sys.executable, str(HOSTILE), "--scale", "0.01", "--max-seconds", "20", "--max-rss-mb", "1024", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    cases = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failed = [c for c in cases if not c["ok"]]
    assert len(cases) >= 30 and not failed and result.returncode == 0, failed or result.stderr[-3000:]


def _code_block(lines: int) -> str:
    body = "".join(f"name_{i:07x}_{(i * 2654435761) % 2**32:08x} = {i}\n" for i in range(lines))
    return f"# Generated\n\nintro\n\n```python\n{body}```\n"


async def test_hostile_documents_are_stored(store, pg_settings: Settings) -> None:
    """What Postgres refuses (tsvector > 1 MB, NUL) never reaches it; the upload completes."""
    settings_ = dataclasses.replace(pg_settings, max_upload_mb=8)
    tracker = ProgressTracker()
    service = IngestService(store, MLService(settings_), settings_, tracker)  # never started: no embedder
    jsonl = json.dumps({"_id": "s1", "title": "t\ud800", "text": "lone \udfff surrogate and NUL \u0000 here"})
    files = {
        "code.md": _code_block(120_000).encode(),  # ~4 MB, one fence: 2.9 MB tsvector before the fix
        "heading.md": b"# " + b"word " * 300_000 + b"\n\nbody\n",
        "nul.txt": b"before \x00 after \x01\x02 end",
        "surrogates.jsonl": jsonl.encode(),
    }
    for name, data in files.items():
        result = await service.ingest_documents(
            SourceInfo(source_id=f"hostile-{name}", title=name, origin="test"),
            parse_bytes(data, name, detect_format(name)),
            tracker.start("upload"),
            "upload",
        )
        assert result["chunks"] >= 1, (name, result)
