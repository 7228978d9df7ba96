"""IngestService on real parts: embedded Postgres (store fixture) and the real MiniLM embedder (ml_service).

Every test asserts what is stored. "ML not ready" is a real MLService that was never started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from starlette.datastructures import UploadFile
from support.polling import apoll_until
from test_parse import make_pdf

from ragserver.config import Settings
from ragserver.domain import Document, SourceInfo
from ragserver.errors import InputError, NotFound, PayloadTooLarge, UnsupportedMediaType
from ragserver.ingest import service as ingest_service
from ragserver.ingest.files import path_source_id, upload_source_id
from ragserver.ingest.service import IngestService
from ragserver.ml.service import MLService
from ragserver.progress import Operation, OperationCancelled, ProgressTracker

pytestmark = pytest.mark.timeout(180)

BATCH = 4


@pytest.fixture
def settings(pg_settings: Settings, ml_settings: Settings) -> Settings:
    return dataclasses.replace(
        pg_settings,
        embedding_model=ml_settings.embedding_model,
        ingest_batch_size=BATCH,
        code_example_min_chars=40,
        max_upload_mb=1,
    )


@pytest.fixture
def tracker() -> ProgressTracker:
    return ProgressTracker()


@pytest.fixture
def service(store, ml_service: MLService, settings: Settings, tracker: ProgressTracker) -> IngestService:
    return IngestService(store, ml_service, settings, tracker)


@pytest.fixture
def offline_service(store, settings: Settings, tracker: ProgressTracker) -> IngestService:
    """The same service with an MLService that never started: no embedder, estimated token counts."""
    return IngestService(store, MLService(settings), settings, tracker)


def source(source_id: str = "docs") -> SourceInfo:
    return SourceInfo(source_id=source_id, title="Docs", origin="test")


def doc(n: int, body: str = "") -> Document:
    text = body or f"# Page {n}\n\nParagraph about topic number {n}.\n\n## Details\n\nMore words for page {n}."
    return Document(url=f"https://example.test/{n}", title=f"Page {n}", markdown=text)


async def active_pages(settings: Settings, source_id: str) -> dict[str, str]:
    """url -> markdown of the source's active generation, read straight from Postgres."""
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        cursor = await conn.execute(
            "SELECT p.url, p.markdown FROM rag_pages p JOIN rag_sources s ON s.active_run_id = p.run_id "
            "WHERE s.source_id = %s",
            (source_id,),
        )
        return dict(await cursor.fetchall())


async def table_counts(settings: Settings) -> dict[str, int]:
    """Rows in each content table, all generations included: staged rows of failed runs must be gone."""
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        counts = {}
        for table in ("rag_pages", "rag_chunks", "rag_chunk_embeddings", "rag_code_examples"):
            counts[table] = (await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone())[0]
        return counts


async def run_statuses(settings: Settings, source_id: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        cursor = await conn.execute("SELECT status FROM rag_runs WHERE source_id = %s ORDER BY run_id", (source_id,))
        return [row[0] for row in await cursor.fetchall()]


async def finished(op: Operation, timeout: float = 60) -> Operation:
    async with asyncio.timeout(timeout):
        await op.ended()
    return op


def upload(data: bytes) -> UploadFile:
    """The file object the upload route hands over (Starlette's, over an in-memory file)."""
    return UploadFile(io.BytesIO(data))


# -- the pipeline ---------------------------------------------------------------------------------------


async def test_ingest_stores_chunks_with_embeddings(service, store, settings, tracker, ml_service) -> None:
    code = "```python\n" + "\n".join(f"print('line {i}')" for i in range(5)) + "\n```"
    docs = [doc(i) for i in range(9)] + [doc(99, f"# Code\n\nBefore the code.\n\n{code}\n\nAfter the code.")]
    op = tracker.start("ingest")
    result = await service.ingest_documents(source(), docs, op, "ingest")

    assert result["documents"] == 10
    assert result["pages"] == 10
    assert result["chunks_stored"] == result["chunks"] == 19
    assert result["code_examples"] == 1
    assert result["chunks_unembedded"] == 0
    assert (await store.embedding_counts())[ml_service.embedding_model] == result["chunks"]
    assert len(await active_pages(settings, "docs")) == 10
    assert op.counts["documents"] == 10 and op.counts["chunks_stored"] == result["chunks"]
    assert op.status == "running"  # the owner of the operation ends it
    assert await run_statuses(settings, "docs") == ["completed"]

    vector = (await ml_service.embed(["topic number 7"]))[0]
    hits = await store.hybrid_search(
        "topic number 7", vector, ml_service.embedding_model, match_count=3, source_id="docs", rrf_k=60, candidates=20
    )
    assert hits[0].url == "https://example.test/7"
    assert hits[0].content.startswith("Page 7\n\n")  # the context line is part of what is stored and indexed


async def test_many_chunks_are_embedded_group_by_group(service, store, tracker, ml_service, monkeypatch) -> None:
    monkeypatch.setattr(ingest_service, "EMBED_GROUP_CHUNKS", 3)
    result = await service.ingest_documents(source(), [doc(i) for i in range(5)], tracker.start("x"), "x")
    assert result["chunks"] == 10
    assert (await store.embedding_counts())[ml_service.embedding_model] == 10


async def test_reingest_replaces_the_previous_generation(service, settings, tracker) -> None:
    await service.ingest_documents(source(), [doc(1), doc(2), doc(3)], tracker.start("ingest"), "ingest")
    await service.ingest_documents(source(), [doc(3), doc(4)], tracker.start("ingest"), "ingest")
    pages = await active_pages(settings, "docs")
    assert sorted(pages) == ["https://example.test/3", "https://example.test/4"]
    assert (await table_counts(settings))["rag_pages"] == 2  # the old generation is deleted


async def test_cancel_midway_keeps_previous_content(service, settings, tracker) -> None:
    await service.ingest_documents(source(), [doc(1)], tracker.start("ingest"), "ingest")
    before = await table_counts(settings)
    op = tracker.start("ingest")

    def cancelling() -> Iterator[Document]:
        for i in itertools.count(100):
            if i == 100 + 2 * BATCH + 1:
                op.cancel()
            yield doc(i)

    with pytest.raises(OperationCancelled):
        await service.ingest_documents(source(), cancelling(), op, "ingest")
    assert list(await active_pages(settings, "docs")) == ["https://example.test/1"]
    assert await table_counts(settings) == before  # the cancelled run's staged rows are gone
    assert await run_statuses(settings, "docs") == ["completed", "cancelled"]


async def test_stop_during_the_commit_comes_too_late_and_the_run_completes(service, settings, tracker) -> None:
    """A stop that lands while commit_run runs must not report "cancelled" for content that went live.

    The test holds the source's row lock from another session, so the commit waits in Postgres
    exactly until the test lets it go; the stop is asked for while it waits.
    """
    op = tracker.start("ingest")
    async with await psycopg.AsyncConnection.connect(settings.database_url) as locker:

        async def documents() -> AsyncIterator[Document]:
            # begin_run has run (it created the source row): hold that row against the commit (FOR UPDATE)
            # but not against the writes (their foreign keys take KEY SHARE) until the stop was asked for
            await locker.execute("SELECT 1 FROM rag_sources WHERE source_id = 'docs' FOR NO KEY UPDATE")
            for i in range(3):
                yield doc(i)

        async def commit_waits() -> bool:
            async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
                cursor = await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE '%rag_commit_run%'"
                )
                row = await cursor.fetchone()
                return bool(row and row[0])

        work = service.ingest_documents(source(), documents(), op, "ingest")
        running = asyncio.create_task(tracker.run(op, work, done=lambda _: "done", stopped="stopped"))
        await apoll_until(commit_waits, bool, what="commit_run waiting for the source row")
        op.cancel()
        for _ in range(10):  # loop turns (no time): let the runner deliver the cancel to the waiting work
            await asyncio.sleep(0)
        await locker.rollback()
        result = await running
    assert op.status == "completed" and result["documents"] == 3
    assert sorted(await active_pages(settings, "docs")) == [f"https://example.test/{i}" for i in range(3)]
    assert await run_statuses(settings, "docs") == ["completed"]


async def test_error_midway_keeps_previous_content_and_marks_run_failed(service, settings, tracker) -> None:
    await service.ingest_documents(source(), [doc(1)], tracker.start("ingest"), "ingest")
    before = await table_counts(settings)

    async def broken() -> AsyncIterator[Document]:
        for i in range(2 * BATCH + 1):
            yield doc(100 + i)
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="source went away"):
        await service.ingest_documents(source(), broken(), tracker.start("ingest"), "ingest")
    assert list(await active_pages(settings, "docs")) == ["https://example.test/1"]
    assert await table_counts(settings) == before
    assert await run_statuses(settings, "docs") == ["completed", "failed"]


async def test_task_cancellation_fails_the_run_as_cancelled(service, settings, tracker) -> None:
    pulled, never = asyncio.Event(), asyncio.Event()

    async def waiting() -> AsyncIterator[Document]:
        for i in itertools.count():
            if i == BATCH + 1:
                pulled.set()  # the run has begun and a batch is on its way to the store
                await never.wait()
            yield doc(i)

    task = asyncio.create_task(service.ingest_documents(source(), waiting(), tracker.start("ingest"), "ingest"))
    await pulled.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await run_statuses(settings, "docs") == ["cancelled"]
    assert (await table_counts(settings))["rag_pages"] == 0


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_documents_stream_in_bounded_batches(offline_service, tracker, kind: str) -> None:
    """An endless source: listing it would never return; the pipeline reads one batch ahead at most."""
    op = tracker.start("ingest")
    pulled = 0

    def check_and_count() -> Document:
        nonlocal pulled
        assert pulled - op.counts.get("documents", 0) <= 2 * BATCH, "pulled more than two batches ahead"
        pulled += 1
        if pulled == 10 * BATCH:
            op.cancel()
        return doc(pulled)

    def endless() -> Iterator[Document]:
        while True:
            yield check_and_count()

    async def endless_async() -> AsyncIterator[Document]:
        while True:
            yield check_and_count()

    with pytest.raises(OperationCancelled):
        await offline_service.ingest_documents(source(), endless() if kind == "sync" else endless_async(), op, "ingest")
    assert 8 * BATCH <= op.counts["documents"] < 10 * BATCH


async def test_without_embedder_chunks_are_stored_then_embed_missing_fills_them(
    offline_service, service, store, settings, tracker, ml_service
) -> None:
    result = await offline_service.ingest_documents(source(), [doc(i) for i in range(6)], tracker.start("x"), "x")
    assert result["chunks_unembedded"] == result["chunks"] > 0
    assert await store.embedding_counts() == {}
    assert await offline_service.embed_missing() == 0  # nothing to embed with

    op = tracker.start("reembed")
    filled = await service.embed_missing(op, batch=5)
    assert filled == result["chunks"]
    assert op.counts["embedded"] == filled
    assert (await store.embedding_counts())[ml_service.embedding_model] == filled
    assert await store.chunks_missing_embeddings(ml_service.embedding_model, 10) == []
    assert await service.embed_missing() == 0


async def test_schedule_reembed_runs_as_an_operation(offline_service, service, store, tracker, ml_service) -> None:
    result = await offline_service.ingest_documents(source(), [doc(1)], tracker.start("x"), "x")
    op = await service.schedule_reembed()
    assert op is not None and op.kind == "reembed"
    await finished(op)
    assert op.status == "completed"
    assert op.result == {"embedded": result["chunks"]}
    assert await offline_service.schedule_reembed() is None  # no embedder, no job


async def test_hostile_text_is_stored(service, settings, tracker) -> None:
    nasty = Document(url="u\x00rl", title="t\ud800", markdown="# H\x00i\n\n" + "x" * 100_000 + "\n\nend \udfff")
    result = await service.ingest_documents(source(), [nasty], tracker.start("x"), "x")
    assert result["documents"] == 1
    assert list(await active_pages(settings, "docs")) == ["url"]


# -- uploads -----------------------------------------------------------------------------------------------


async def test_upload_validates_before_starting(service, tracker) -> None:
    with pytest.raises(PayloadTooLarge):
        await service.start_upload("big.md", upload(b"x" * (1024 * 1024 + 1)))
    with pytest.raises(UnsupportedMediaType):
        await service.start_upload("photo.png", upload(b"\x89PNG...."))
    with pytest.raises(InputError):
        await service.start_upload("empty.md", upload(b"  \n"))
    with pytest.raises(InputError):
        await service.start_upload("..", upload(b"text"))
    assert tracker.list() == []  # no operation was started for a refused upload


async def test_upload_of_exactly_the_limit_is_accepted(offline_service) -> None:
    op = await offline_service.start_upload("limit.txt", upload(b"word " * (1024 * 1024 // 5) + b"x"))
    assert (await finished(op)).status == "completed", op.error


async def test_upload_ingests_in_background_and_reupload_replaces(service, store, settings) -> None:
    op = await service.start_upload("../../Guide.md", upload(b"# Guide\n\nFirst version."), ["a"], "technical")
    await finished(op)
    assert op.status == "completed", op.error
    source_id = upload_source_id("Guide.md")
    assert op.result["source_id"] == source_id
    assert await active_pages(settings, source_id) == {"Guide.md": "# Guide\n\nFirst version."}
    info = await store.get_source(source_id)
    assert info["tags"] == ["a"]

    op = await service.start_upload("Guide.md", upload(b"# Guide\n\nSecond version."), [], "technical")
    await finished(op)
    assert await active_pages(settings, source_id) == {"Guide.md": "# Guide\n\nSecond version."}


async def test_upload_of_broken_pdf_fails_the_operation_cleanly(service, store) -> None:
    op = await service.start_upload("paper.pdf", upload(make_pdf([["text"]])[:150]))
    await finished(op)
    assert op.status == "failed"
    assert "paper.pdf" in op.error and "damaged" in op.error
    with pytest.raises(NotFound):
        await store.get_source(upload_source_id("paper.pdf"))


async def test_upload_of_jsonl_with_a_bad_line_keeps_previous_content(service, settings) -> None:
    good = b'{"_id": "1", "title": "One", "text": "first"}\n'
    op = await service.start_upload("corpus.jsonl", upload(good))
    await finished(op)
    op = await service.start_upload("corpus.jsonl", upload(good + b'{"_id": "2", "text": \n'))
    await finished(op)
    assert op.status == "failed"
    assert "corpus.jsonl line 2" in op.error
    assert await active_pages(settings, upload_source_id("corpus.jsonl")) == {"jsonl://corpus.jsonl#1": "first"}


async def test_cancelled_upload_ends_cancelled(service, settings) -> None:
    lines = b"".join(json.dumps({"_id": str(i), "text": f"doc {i}"}).encode() + b"\n" for i in range(400))
    op = await service.start_upload("many.jsonl", upload(lines))
    op.cancel()
    await finished(op)
    assert op.status == "cancelled"
    assert await active_pages(settings, upload_source_id("many.jsonl")) == {}


# -- local paths (CLI) ----------------------------------------------------------------------------------------


def build_folder(root: Path, outside: Path) -> None:
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "intro.md").write_text("# Intro\n\nHello.\n")
    (root / "notes.txt").write_text("plain notes\n")
    (root / "page.html").write_text("<title>Page</title><h1>Page</h1><p>html body</p>")
    (root / "manual.pdf").write_bytes(make_pdf([["pdf page one"], ["pdf page two"]]))
    (root / "corpus.jsonl").write_text('{"_id": "a", "text": "alpha"}\n{"_id": "b", "text": "beta"}\n')
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    (root / "image.png").write_bytes(b"\x89PNG")
    outside.write_text("# Secret\n")
    (root / "escape.md").symlink_to(outside)


async def test_ingest_folder(service, settings, tmp_path: Path) -> None:
    root = tmp_path / "kb"
    build_folder(root, tmp_path / "secret.md")
    snapshots: list[dict] = []
    result = await service.ingest_path(root, tags=["kb"], on_progress=snapshots.append)

    assert result["source_id"] == path_source_id(root)
    assert result["documents"] == 7
    assert (result["failed"], result["skipped_unsupported"], result["skipped_outside"]) == (1, 1, 1)
    assert "broken.pdf" in result["errors"][0]
    pages = await active_pages(settings, result["source_id"])
    assert sorted(pages) == [
        "guide/intro.md",
        "jsonl://corpus.jsonl#a",
        "jsonl://corpus.jsonl#b",
        "manual.pdf#page=1",
        "manual.pdf#page=2",
        "notes.txt",
        "page.html",
    ]
    await service.progress.drain()
    assert snapshots[-1]["status"] == "completed"
    assert {s["progressId"] for s in snapshots} == {snapshots[-1]["progressId"]}

    (root / "notes.txt").unlink()
    again = await service.ingest_path(root)
    assert again["source_id"] == result["source_id"]
    assert "notes.txt" not in await active_pages(settings, result["source_id"])


async def test_ingest_single_file_and_bad_paths(service, settings, tmp_path: Path) -> None:
    path = tmp_path / "one.md"
    path.write_text("# One\n\nSingle file.\n")
    result = await service.ingest_path(path)
    assert result["documents"] == 1
    assert await active_pages(settings, path_source_id(path)) == {"one.md": "# One\n\nSingle file.\n"}

    with pytest.raises(InputError, match="no such file"):
        await service.ingest_path(tmp_path / "missing")
    (tmp_path / "x.bin").write_bytes(b"\x00")
    with pytest.raises(UnsupportedMediaType):
        await service.ingest_path(tmp_path / "x.bin")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(InputError, match=r"bad\.jsonl line 1"):
        await service.ingest_path(bad)
    assert await run_statuses(settings, path_source_id(bad)) == ["failed"]
