"""IngestService: documents -> chunks -> embeddings -> one transaction per document, as one run.

Every ingest is a new generation of its source (store.begin_run ... commit_run): until the
commit, searches keep seeing the previous content, and a failure or a cancel drops only the new
rows. A progressive ingest (a crawl) hands a batch on once its first page has waited
INGEST_FLUSH_S, full or not, and when its source has no content yet it is searchable as it goes
instead: each page is visible once written, and stopped early it keeps what it wrote (partial).
Documents stream through in batches of INGEST_BATCH_SIZE, so memory stays flat however
large the corpus; parsing and chunking run in worker threads of low OS priority (lowpriority.py:
searches and the event loop go first), embedding in the ML worker's bulk lane. A document carried
from the previous generation (`Document.carried_from`: a refresh found it unchanged) is copied in
the store with its chunks and vectors, neither chunked nor embedded.

Operations: whoever starts an operation ends it. `ingest_documents` only reports steps and
counts on the operation it is given (the crawl service finishes its own with crawl stats);
`start_upload`, `ingest_path` and `schedule_reembed` start theirs and hand the work to the
tracker's runner (`ProgressTracker.run` / `.spawn`), which ends them from the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from ragserver.config import Settings
from ragserver.domain import Chunk, CodeExample, Document, SourceInfo, source_labels
from ragserver.errors import Busy, InputError, MLError, RagServerError, Unavailable
from ragserver.ingest.chunk import chunk_document
from ragserver.ingest.files import (
    FolderScan,
    file_documents,
    folder_documents,
    path_source_id,
    read_upload,
    safe_filename,
    upload_source_id,
    walk_folder,
)
from ragserver.ingest.formats import detect_format, storable_text
from ragserver.ingest.parse import parse_bytes
from ragserver.ingest.ports import EmbeddingModel, IngestStore, UploadStream
from ragserver.lowpriority import bulk_executor
from ragserver.progress import FINAL, Operation, OperationCancelled, ProgressTracker, Result
from ragserver.replicas import ReplicaWorker

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256  # chunk size while no embedder is loaded (all-MiniLM-L6-v2's sequence length)
EMBED_REQUEST_TEXTS = 256  # texts per ml.embed call: batches well, yet lets search queries in between
EMBED_GROUP_CHUNKS = 1024  # chunks embedded before their documents are written (bounds vectors in memory)
BUSY_RETRY_DELAYS_S = (0.5, 1.0, 2.0)
STOPPED = "stopped; the previous content was kept"
RUN_STOPPED = "stopped before it finished; previous content kept"
RUN_STOPPED_PROGRESSIVE = "stopped before it finished; previous content (a first crawl: its pages so far) kept"
REEMBED_MESSAGE = "embedding chunks stored without vectors"
REEMBED_NAME = "Chunks without vectors"  # a pass covers every source's chunks, so no source names it
REEMBED_JOB_KEY = "reembed"  # one pass at a time across replicas (rag_operations' active job keys)

T = TypeVar("T")
Documents = AsyncIterable[Document] | Iterable[Document]
OffLoop = Callable[[Callable[[], T]], Awaitable[T]]  # IngestService._off_loop: CPU work in a bulk thread


@dataclasses.dataclass
class _Prepared:
    doc: Document
    chunks: list[Chunk]
    examples: list[CodeExample]


class IngestService:
    """Turns documents, uploads and local paths into stored, embedded chunks."""

    def __init__(
        self,
        store: IngestStore,
        ml: EmbeddingModel,
        settings: Settings,
        progress: ProgressTracker,
        replica: ReplicaWorker | None = None,
    ) -> None:
        self.store = store
        self.replica = replica
        if replica is not None:
            replica.register("reembed", self._run_reembed)
        self.ml = ml
        self.settings = settings
        self.progress = progress
        self._spaces: set[tuple[str, int]] = set()
        self._reembed_lock = asyncio.Lock()
        self._reembed_op: Operation | None = None  # the scheduled pass, taken at once (its lock only once it runs)
        # parsing and chunking for every ingest at once: the next batch is prepared while one is
        # stored, and one big PDF being parsed does not hold up the other ingests
        self._cpu = bulk_executor("ingest", settings.bulk_nice, workers=4)

    def close(self) -> None:
        """Let the parsing threads go (at shutdown, after the background operations ended)."""
        self._cpu.shutdown(wait=False, cancel_futures=True)

    async def _off_loop(self, function: Callable[[], T]) -> T:
        """Run CPU work (parsing, chunking, reading files) in a low-priority thread."""
        return await asyncio.get_running_loop().run_in_executor(self._cpu, function)

    @property
    def max_tokens(self) -> int:
        """Chunk size: CHUNK_MAX_TOKENS when set, else the embedding model's max sequence length."""
        if self.settings.chunk_max_tokens > 0:
            return self.settings.chunk_max_tokens
        return self.ml.max_seq_length or DEFAULT_MAX_TOKENS

    # -- the pipeline -----------------------------------------------------------------------

    async def ingest_documents(
        self,
        source: SourceInfo,
        documents: Documents,
        op: Operation,
        kind: str,
        *,
        total: int | None = None,
        progressive: bool = False,
    ) -> Result:
        """Ingest a stream of documents as a new generation of `source`; returns the counts.

        On any exception or cancellation the run is failed (previous content untouched; a
        progressive run keeps what it wrote) and the exception re-raised; `op` is left for its
        owner to end. `total`, when known, is the expected number of documents, used for the
        progress percentage. `progressive`: see the module docstring.
        """
        counts = {"documents": 0, "chunks_stored": 0, "code_examples": 0, "chunks_unembedded": 0, "chunks_carried": 0}
        op.increment(**counts, failed=0)
        run_id, stop_came = await _whole(self.store.begin_run(source, kind, progressive=progressive))
        extract_code = source.metadata.get("extract_code_examples", True) is not False
        flush_s = self.settings.ingest_flush_s if progressive else None
        try:
            if stop_came:
                raise asyncio.CancelledError
            async with contextlib.aclosing(self._chunked_batches(documents, op, extract_code, flush_s)) as batches:
                async for pending in batches:
                    op.raise_if_cancelled()
                    await self._store_batch(source.source_id, run_id, pending, op, counts)
                    if total:
                        op.update(progress=min(99.0, 100.0 * counts["documents"] / total))
            op.raise_if_cancelled()
            op.update(step="finalizing")
            # A stop that arrives while the commit runs comes too late: the new content is live.
            stored, _ = await _whole(self.store.commit_run(source.source_id, run_id))
        except BaseException as exc:
            await self._abandon(source.source_id, run_id, exc, progressive=progressive)
            raise
        if counts["chunks_unembedded"] and self.ml.embedder_ready:
            await self.schedule_reembed()
        return {"source_id": source.source_id, "run_id": run_id, **counts, **stored}

    async def _chunked_batches(
        self, documents: Documents, op: Operation, extract_code: bool, flush_s: float | None
    ) -> AsyncGenerator[deque[_Prepared]]:
        """Chunked batches; the next batch is read and chunked while the caller embeds and stores this one.

        The overlap keeps the CPU (parsing, tokenizing) and the embedder busy at the same time;
        at most two batches are in memory.
        """
        size = self.settings.ingest_batch_size
        async with contextlib.aclosing(_batches(documents, size, op, self._off_loop, flush_s)) as batches:

            async def prepare() -> deque[_Prepared] | None:
                batch = await anext(batches, None)
                if batch is None:
                    return None
                op.update(step="chunking")
                return deque(await self._off_loop(lambda: self._chunk_batch(batch, extract_code)))

            upcoming = asyncio.ensure_future(prepare())
            try:
                while (ready := await upcoming) is not None:
                    upcoming = asyncio.ensure_future(prepare())
                    yield ready
            finally:
                upcoming.cancel()
                await asyncio.gather(upcoming, return_exceptions=True)

    async def _store_batch(
        self, source_id: str, run_id: int, pending: deque[_Prepared], op: Operation, counts: dict[str, int]
    ) -> None:
        """Embed and write chunked documents, about EMBED_GROUP_CHUNKS chunks at a time.

        Grouping bounds the vectors held at once (a list of floats per chunk is ~12 KB) whatever
        the documents' sizes, while each ml.embed call still carries many chunks.
        """
        while pending:
            group = [pending.popleft()]
            size = len(group[0].chunks)
            while pending and size + len(pending[0].chunks) <= EMBED_GROUP_CHUNKS:
                size += len(pending[0].chunks)
                group.append(pending.popleft())
            model = await self._embed_batch(group, op, counts)
            op.update(step="storing")
            for item in group:
                op.raise_if_cancelled()
                if item.doc.carried_from is None:
                    await self.store.write_document(source_id, run_id, item.doc, item.chunks, item.examples, model)
                    stored = {"documents": 1, "chunks_stored": len(item.chunks), "code_examples": len(item.examples)}
                else:
                    carried = await self.store.carry_page(source_id, run_id, item.doc)
                    if carried is None:  # the previous generation went away meanwhile (another run committed)
                        log.warning("%s: the page to carry is gone; not stored", item.doc.url)
                        continue
                    chunks, examples = carried["chunks"], carried["code_examples"]
                    stored = {
                        "documents": 1,
                        "chunks_stored": chunks,
                        "code_examples": examples,
                        "chunks_carried": chunks,
                    }
                for name, value in stored.items():
                    counts[name] += value
                op.increment(**stored)

    def _chunk_batch(self, batch: list[Document], extract_code: bool) -> list[_Prepared]:
        """Chunks and code examples of a batch (runs in a worker thread: tokenizing is CPU work)."""
        prepared: list[_Prepared] = []
        for raw in batch:
            if raw.carried_from is not None:
                prepared.append(_Prepared(raw, [], []))
                continue
            doc = dataclasses.replace(
                raw, url=storable_text(raw.url), title=storable_text(raw.title), markdown=storable_text(raw.markdown)
            )
            chunks, examples = chunk_document(
                doc,
                max_tokens=self.max_tokens,
                count_tokens=self.ml.count_tokens,
                code_min_chars=self.settings.code_example_min_chars,
            )
            prepared.append(_Prepared(doc, chunks, examples if extract_code else []))
        return prepared

    async def _embed_batch(self, group: list[_Prepared], op: Operation, counts: dict[str, int]) -> str | None:
        """Set vectors on every chunk of the batch; the model name, or None when stored without vectors.

        A missing, busy or failing embedder never fails the ingest: the chunks are stored without
        vectors (full-text search still finds them) and `embed_missing` fills them in later.
        """
        chunks = [chunk for item in group for chunk in item.chunks]
        if not chunks:
            return None
        if not self.ml.embedder_ready:
            counts["chunks_unembedded"] += len(chunks)
            return None
        op.update(step="embedding")
        model = self.ml.embedding_model
        try:
            await self._ensure_space(model, self.ml.dimension)
            for start in range(0, len(chunks), EMBED_REQUEST_TEXTS):
                op.raise_if_cancelled()
                part = chunks[start : start + EMBED_REQUEST_TEXTS]
                vectors = await self._embed_texts([chunk.content for chunk in part])
                for chunk, vector in zip(part, vectors, strict=True):
                    chunk.embedding = vector
        except (Unavailable, Busy, MLError) as exc:
            log.warning("storing %d chunks without vectors (filled in later): %s", len(chunks), exc)
            for chunk in chunks:
                chunk.embedding = None
            counts["chunks_unembedded"] += len(chunks)
            return None
        return model

    async def _embed_texts(self, texts: list[str]) -> list[list[float]]:
        """ml.embed, waiting a little when its queue is full (searches have priority over ingest)."""
        for delay in BUSY_RETRY_DELAYS_S:
            try:
                return await self.ml.embed(texts, bulk=True)
            except Busy:
                await asyncio.sleep(delay)
        return await self.ml.embed(texts, bulk=True)

    async def _ensure_space(self, model: str, dimension: int | None) -> None:
        if dimension is None:
            raise Unavailable("the embedder reports no dimension")
        if (model, dimension) not in self._spaces:
            await self.store.ensure_embedding_space(model, dimension)
            self._spaces.add((model, dimension))

    async def _abandon(self, source_id: str, run_id: int, exc: BaseException, *, progressive: bool) -> None:
        """Fail the run after an error or a cancel; never masks the original exception. A stop is said in
        words (the sources listing shows it as the last run's error), not as the CancelledError it arrives as."""
        stopped = isinstance(exc, OperationCancelled) or not isinstance(exc, Exception)
        status = "cancelled" if stopped else "failed"
        if stopped:
            message = RUN_STOPPED_PROGRESSIVE if progressive else RUN_STOPPED
        else:
            message = exc.message if isinstance(exc, RagServerError) else f"{type(exc).__name__}: {exc}"
        try:
            await asyncio.shield(self.store.fail_run(source_id, run_id, status, message[:1000]))
        except BaseException:  # the store may be down too; recover_interrupted_runs cleans up at start
            log.exception("could not mark run %s of %s as %s", run_id, source_id, status)

    # -- entry points that own their operation ------------------------------------------------

    async def start_upload(
        self,
        filename: str,
        upload: UploadStream,
        tags: list[str] | None = None,
        knowledge_type: str = "technical",
        *,
        content_type: str | None = None,
        library: str | None = None,
        version: str | None = None,
    ) -> Operation:
        """Validate an uploaded file, then ingest it in the background; returns its operation.

        Name, type and size are checked here, so a bad upload is a 4xx answer, not a failed job:
        the format is detected once and handed to the parser, and the file is read only up to
        MAX_UPLOAD_MB. Re-uploading a file of the same name replaces that source. `library` and
        `version` label the source (searches and listings filter by them).
        """
        name = safe_filename(filename)
        kind = detect_format(name, content_type)
        data = await read_upload(upload, name, self.settings.max_upload_mb)
        if not data.strip():
            raise InputError(f"{name} is empty")
        source = SourceInfo(
            source_id=upload_source_id(name),
            title=name,
            origin=f"upload:{name}",
            knowledge_type=knowledge_type,
            tags=list(tags or []),
            metadata={"filename": name, "bytes": len(data), **source_labels(library, version)},
        )
        op = self.progress.start("upload", name=name, message=f"ingesting {name}")

        async def work() -> Result:
            documents = await self._off_loop(lambda: parse_bytes(data, name, kind, content_type))
            return await self.ingest_documents(source, documents, op, "upload")

        self.progress.spawn(op, work(), done=lambda _: f"ingested {name}", stopped=STOPPED)
        return op

    async def ingest_path(
        self,
        path: Path | str,
        *,
        tags: list[str] | None = None,
        knowledge_type: str = "technical",
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> Result:
        """Ingest a local file or a folder (recursively) as one source, for the CLI; re-raises failures.

        In a folder, unsupported files and symlinks leading outside it are skipped and counted,
        and a file that cannot be parsed is counted as failed without stopping the others.
        """
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        kind = detect_format(path.name) if path.is_file() else None
        resolved = path.resolve()
        source = SourceInfo(
            source_id=path_source_id(path),
            title=resolved.name or str(resolved),
            origin=str(resolved),
            knowledge_type=knowledge_type,
            tags=list(tags or []),
        )
        op = self.progress.start("ingest", name=str(resolved), message=f"ingesting {resolved}")
        if on_progress is not None:
            self.progress.add_listener(_for_operation(op.id, on_progress))
        if kind is not None:
            work = self.ingest_documents(source, file_documents(resolved, path.name, kind), op, "ingest")
        else:
            work = self._ingest_folder(source, resolved, op)
        return await self.progress.run(op, work, done=lambda _: f"ingested {path}", stopped=STOPPED)

    async def _ingest_folder(self, source: SourceInfo, root: Path, op: Operation) -> Result:
        total = await self._off_loop(lambda: sum(1 for _ in walk_folder(root, FolderScan())))
        scan = FolderScan()
        result = await self.ingest_documents(source, folder_documents(root, scan), op, "ingest", total=total)
        skipped = {"failed": scan.failed, "skipped_unsupported": scan.unsupported, "skipped_outside": scan.outside}
        op.update(counts=skipped)
        return {**result, **skipped, "errors": scan.errors}

    # -- vectors for chunks stored without them --------------------------------------------------

    async def embed_missing(self, op: Operation | None = None, batch: int = 64) -> int:
        """Embed every chunk that has no vector under the current model; returns how many were filled.

        Runs after the embedder becomes ready (the app calls it at start) and after ingests that
        had to store chunks without vectors. One pass at a time; 0 when the embedder is not ready.
        """
        if not self.ml.embedder_ready:
            return 0
        async with self._reembed_lock:
            model = self.ml.embedding_model
            await self._ensure_space(model, self.ml.dimension)
            filled, previous = 0, set[int]()
            while True:
                if op is not None:
                    op.raise_if_cancelled()
                rows = await self.store.chunks_missing_embeddings(model, batch)
                ids = [chunk_id for chunk_id, _ in rows]
                if not rows or previous.intersection(ids):  # the same rows again: the write did not stick
                    break
                vectors = await self._embed_texts([text for _, text in rows])
                await self.store.set_embeddings(model, list(zip(ids, vectors, strict=True)))
                filled += len(rows)
                previous = set(ids)
                if op is not None:
                    op.update(step="embedding", counts={"embedded": filled})
            return filled

    async def schedule_reembed(self) -> Operation | None:
        """Start `embed_missing` as a background operation; None when the embedder is not ready or a pass
        runs, here or (with a replica: the pass holds the job key REEMBED_JOB_KEY) on any replica, so
        replicas that start together do not all embed the same chunks."""
        scheduled = self._reembed_op is not None and self._reembed_op.status not in FINAL
        if not self.ml.embedder_ready or scheduled or self._reembed_lock.locked():
            return None
        if self.replica is None:
            op = self.progress.start("reembed", name=REEMBED_NAME, message=REEMBED_MESSAGE)
        else:
            claimed = await self.replica.start_here(
                "reembed", name=REEMBED_NAME, message=REEMBED_MESSAGE, job_key=REEMBED_JOB_KEY
            )
            if claimed is None:
                return None
            op = claimed
        self._run_reembed(op)
        return op

    def _run_reembed(self, op: Operation, _request: dict[str, Any] | None = None) -> None:
        """Spawn a pass on `op`; also the runner of a queued pass that another replica's `start_here` left
        unclaimed (it failed between queueing and claiming), so its job key is never held for good."""
        self._reembed_op = op

        async def work() -> Result:
            return {"embedded": await self.embed_missing(op)}

        self.progress.spawn(
            op,
            work(),
            done=lambda _: "embedded the chunks that had no vectors",
            stopped="stopped; the next pass embeds the rest",
        )


async def _whole(step: Awaitable[T]) -> tuple[T, bool]:
    """Run a store step that a cancel must not cut in half; returns its result and whether a cancel
    came meanwhile.

    Cancelling a query leaves it done or undone on the server without telling which; begin and
    commit are single statements, so they are let finish and the caller decides what the cancel
    still means.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task), False
    except asyncio.CancelledError:
        if task.cancelled():
            raise
        return await task, True


async def _batches(
    documents: Documents,
    size: int,
    op: Operation,
    off_loop: OffLoop[list[Document]],
    flush_s: float | None = None,
) -> AsyncGenerator[list[Document]]:
    """Lists of at most `size` documents, pulled lazily; sync sources are read through `off_loop`.

    With `flush_s`, an async source's batch is handed on once its first document has waited that
    long, full or not (a slow crawl's first pages become searchable early).
    """
    size = max(1, size)
    if isinstance(documents, AsyncIterable):
        async with contextlib.aclosing(_timed_batches(aiter(documents), size, flush_s)) as batches:
            async for batch in batches:
                yield batch
                op.update(step="parsing")
        return
    iterator = iter(documents)
    while True:
        op.update(step="parsing")
        batch = await off_loop(lambda: list(islice(iterator, size)))
        if not batch:
            return
        yield batch


async def _timed_batches(
    documents: AsyncIterator[Document], size: int, flush_s: float | None
) -> AsyncGenerator[list[Document]]:
    """Batches of `documents` (see `_batches`): the next document is awaited in a task of its own, so
    a batch can be handed on at its deadline while that document is still on its way."""
    loop = asyncio.get_running_loop()
    batch: list[Document] = []
    deadline = 0.0
    upcoming: asyncio.Future[Document | None] | None = None
    try:
        while True:
            if upcoming is None:
                upcoming = asyncio.ensure_future(anext(documents, None))
            wait = None if not batch or flush_s is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait({upcoming}, timeout=wait)
            if not done:
                yield batch
                batch = []
                continue
            doc, upcoming = upcoming.result(), None
            if doc is None:
                break
            if not batch:
                deadline = loop.time() + (flush_s or 0.0)
            batch.append(doc)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        if upcoming is not None:
            upcoming.cancel()
            await asyncio.gather(upcoming, return_exceptions=True)


def _for_operation(
    op_id: str, callback: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """A tracker listener that passes on the snapshots of one operation only."""

    async def listener(snapshot: dict[str, Any]) -> None:
        if snapshot.get("progressId") == op_id:
            callback(snapshot)

    return listener
