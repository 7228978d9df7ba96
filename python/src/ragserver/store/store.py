"""The Store: ragserver's knowledge base as async methods over the rag_* SQL functions.

All logic lives in SQL (store/functions/) so this class only shapes arguments and rows; the same
code serves psycopg and Supabase through a Transport. Vectors are typed arguments (VectorArg,
VectorsArg) beside the JSON payloads, and each transport sends them in its own form (see
store/transport.py), so the database reads every vector once.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, Unpack

from ragserver.domain import Chunk, CodeExample, CodeExampleHit, Document, SearchHit, SearchOptions, SourceInfo
from ragserver.errors import InputError, NotFound, RagServerError
from ragserver.store.migrate import MigrationReport
from ragserver.store.operations import OWNER_GRACE_S, OperationStore
from ragserver.store.schema_check import SchemaState, assess_info
from ragserver.store.schema_files import latest_version
from ragserver.store.transport import Transport, VectorArg, VectorsArg

# Runs without an owner lock (started over Supabase RPC) count as interrupted after this long
# without a write.
STALE_RUN_S = 600
MAX_PER_PAGE = 500
#: The largest offset or count an `integer` argument of the SQL functions takes.
MAX_SQL_INT = 2**31 - 1


class EmbeddingSpace(TypedDict):
    model: str
    dimension: int


class StoreHealth(TypedDict, total=False):
    """Store.health(): `state` and `reason` always, the schema's details once the database answered."""

    backend: str
    ok: bool
    state: Literal["ready", "error"]
    reason: str
    expected_schema_version: str
    schema_version: str | None
    schema_ready: bool
    #: the database recorded a migration no release of it had, or one of a newer release
    schema_mismatch: bool
    functions_current: bool
    migrations: int
    embedding_spaces: list[EmbeddingSpace]


class SourcePage(TypedDict):
    """One page of list_sources: the sources as rag_source_json shapes them, and how many exist."""

    items: list[dict[str, Any]]
    total: int


class PreviousPage(TypedDict):
    """A page of a source's active generation as a refresh compares it (rag_previous_pages)."""

    page_id: int
    url: str
    etag: str | None
    last_modified: str | None
    content_hash: str | None


class CarriedPage(TypedDict):
    """The copy carry_page made in the new run and what came with it."""

    page_id: int
    chunks: int
    code_examples: int


class PageRows(TypedDict):
    """One window of a source listing (list_pages, list_code_examples): the rows as its SQL function
    shapes them, and how many match."""

    items: list[dict[str, Any]]
    total: int


class Store:
    """Sources, generations (runs), pages, chunks, vectors per model, code examples, search."""

    def __init__(self, transport: Transport, *, backend: str, migration_report: MigrationReport | None = None) -> None:
        self.transport = transport
        self.backend = backend
        #: what open_store applied to bring the schema up to date (it is the one place that migrates)
        self.migration_report = migration_report or MigrationReport()
        #: the long operations every replica sees (store/operations.py)
        self.operations = OperationStore(transport)

    async def _call(self, fn: str, **params: Any) -> list[dict[str, Any]]:
        return await self.transport.call(fn, params)

    # -- schema ---------------------------------------------------------------------------

    async def _schema_state(self) -> tuple[dict[str, Any], SchemaState]:
        info = (await self._call("rag_schema_info"))[0]
        return info, assess_info(info)

    async def health(self) -> StoreHealth:
        """Backend, schema version and vector spaces; never raises: `state` ready|error with a `reason`
        (unreachable, not migrated, functions out of date, or a schema this code cannot run on)."""
        expected = latest_version()
        try:
            await self.transport.ping()
            info, state = await self._schema_state()
        except RagServerError as exc:
            return {
                "backend": self.backend,
                "expected_schema_version": expected,
                "ok": False,
                "state": "error",
                "reason": exc.message,
                "schema_ready": False,
            }
        return {
            "backend": self.backend,
            "expected_schema_version": expected,
            "ok": state.ready,
            "state": "ready" if state.ready else "error",
            "reason": state.reason,
            "schema_version": info["version"],
            "schema_ready": state.ready,
            "schema_mismatch": bool(state.mismatch),
            "functions_current": not state.stale_functions,
            "migrations": info["migrations"],
            "embedding_spaces": info["embedding_spaces"],
        }

    async def ensure_embedding_space(self, model: str, dimension: int) -> None:
        """Register the model's dimension and its partial HNSW index (idempotent)."""
        await self._call("rag_ensure_embedding_space", p_model=model, p_dimension=dimension)

    # -- generations ----------------------------------------------------------------------

    async def begin_run(self, source: SourceInfo, kind: str, *, progressive: bool = False) -> int:
        """Start a new generation of the source (creating the source); its rows stay invisible until commit,
        unless `progressive` and the source has no content yet: then each row is searchable once written
        and a run that ends without its commit keeps them as 'partial' (see store/functions/10_runs.sql)."""
        payload = {
            "source_id": source.source_id,
            "title": source.title,
            "origin": source.origin,
            "knowledge_type": source.knowledge_type,
            "tags": list(source.tags),
            "metadata": source.metadata,
        }
        rows = await self._call(
            "rag_begin_run",
            p_source=payload,
            p_kind=kind,
            p_owner_lock=self.transport.owner_lock,
            p_progressive=progressive,
        )
        return int(rows[0]["run_id"])

    async def write_document(
        self,
        source_id: str,
        run_id: int,
        doc: Document,
        chunks: list[Chunk],
        code_examples: list[CodeExample],
        embedding_model: str | None,
    ) -> int:
        """Store one document of a running generation in one transaction; returns its page id."""
        vectors = [c.embedding for c in chunks]
        payload = {
            "source_id": source_id,
            "run_id": run_id,
            "url": doc.url,
            "title": doc.title,
            "markdown": doc.markdown,
            "metadata": doc.metadata,
            "etag": doc.etag,
            "last_modified": doc.last_modified,
            "content_hash": doc.content_hash,
            "links": doc.links,
            "embedding_model": embedding_model,
            "chunks": [
                {
                    "index": c.index,
                    "content": c.content,
                    "heading_path": c.heading_path,
                    "metadata": c.metadata,
                }
                for c in chunks
            ],
            "code_examples": [
                {
                    "index": e.index,
                    "code": e.code,
                    "language": e.language,
                    "context": e.context,
                    "heading_path": e.heading_path,
                }
                for e in code_examples
            ],
        }
        embeddings = VectorsArg(vectors) if any(v is not None for v in vectors) else None
        rows = await self._call("rag_write_document", p_payload=payload, p_embeddings=embeddings)
        return int(rows[0]["page_id"])

    async def carry_page(self, source_id: str, run_id: int, doc: Document) -> CarriedPage | None:
        """Copy page `doc.carried_from` of an earlier generation, with its chunks, vectors and code
        examples, into the running one, with the validators of `doc` (and its links when it has
        some); None when that page no longer exists."""
        if doc.carried_from is None:
            raise InputError(f"{doc.url} is not carried from a stored page")
        page: dict[str, Any] = {"etag": doc.etag, "last_modified": doc.last_modified}
        if doc.links:
            page["links"] = doc.links
        rows = await self._call(
            "rag_carry_page", p_source_id=source_id, p_run_id=run_id, p_page_id=doc.carried_from, p_page=page
        )
        if not rows:
            return None
        return {
            "page_id": int(rows[0]["page_id"]),
            "chunks": int(rows[0]["chunks"]),
            "code_examples": int(rows[0]["code_examples"]),
        }

    async def previous_pages(self, source_id: str) -> list[PreviousPage]:
        """The pages of the source's active generation with their validators (none: no content)."""
        rows = await self._call("rag_previous_pages", p_source_id=source_id)
        pages: list[PreviousPage] = rows[0]["pages"] if rows else []
        return pages

    async def page_links(self, page_id: int) -> list[str]:
        """The links a stored page had when it was fetched."""
        rows = await self._call("rag_page_links", p_page_id=page_id)
        return list(rows[0]["links"] or []) if rows else []

    async def commit_run(self, source_id: str, run_id: int) -> dict[str, int]:
        """Atomically make the run the source's content and delete the generation it replaces."""
        rows = await self._call("rag_commit_run", p_source_id=source_id, p_run_id=run_id)
        return {k: int(v) for k, v in rows[0].items()}

    async def fail_run(self, source_id: str, run_id: int, status: str, error: str) -> None:
        """End a running generation as failed/cancelled and drop its staged rows."""
        if status not in ("failed", "cancelled"):
            raise InputError(f"status must be 'failed' or 'cancelled', not {status!r}")
        await self._call("rag_fail_run", p_source_id=source_id, p_run_id=run_id, p_status=status, p_error=error)

    async def keep_owner_lock(self) -> None:
        """Take the owner lock again when its session dropped (a replica calls this each beat, so others
        do not take its runs and operations for interrupted); Unavailable while the database is away.
        Over RPC there is no lock to keep."""
        if self.transport.owner_lock is not None:
            await self.transport.ping()

    async def recover_interrupted_runs(self) -> int:
        """Fail the runs whose process is gone and drop their staged rows; returns how many."""
        rows = await self._call(
            "rag_recover_interrupted_runs", p_stale_seconds=STALE_RUN_S, p_grace_seconds=OWNER_GRACE_S
        )
        return len(rows)

    # -- search ---------------------------------------------------------------------------

    async def hybrid_search(
        self, query: str, embedding: list[float] | None, model: str | None, **options: Unpack[SearchOptions]
    ) -> list[SearchHit]:
        """Vector and full-text top-k fused by RRF (full text only when embedding is None), best first."""
        return [SearchHit(**row) for row in await self._search("rag_hybrid_search", query, embedding, model, options)]

    async def search_code_examples(
        self, query: str, embedding: list[float] | None, model: str | None, **options: Unpack[SearchOptions]
    ) -> list[CodeExampleHit]:
        """Code examples by full text, fused by RRF with the vector rank of the page they are on."""
        rows = await self._search("rag_search_code_examples", query, embedding, model, options)
        return [CodeExampleHit(**row) for row in rows]

    async def _search(
        self, fn: str, query: str, embedding: list[float] | None, model: str | None, options: SearchOptions
    ) -> list[dict[str, Any]]:
        return await self._call(
            fn,
            p_query=query,
            p_embedding=None if embedding is None else VectorArg(embedding),
            p_model=model,
            p_match_count=options["match_count"],
            p_source_id=options["source_id"],
            p_rrf_k=options["rrf_k"],
            p_candidates=options["candidates"],
            p_library=options.get("library"),
            p_version=options.get("version"),
        )

    # -- catalog --------------------------------------------------------------------------

    async def list_sources(
        self, *, page: int = 1, per_page: int = 50, library: str | None = None, version: str | None = None
    ) -> SourcePage:
        """One page of sources (newest first) with their counts and last run, plus the total;
        `library` / `version` (None: any) keep those labelled so, case-insensitively."""
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise InputError(f"page must be >= 1 and per_page 1..{MAX_PER_PAGE}")
        rows = await self._call(
            "rag_list_sources",
            p_limit=per_page,
            p_offset=(page - 1) * per_page,
            p_library=library,
            p_version=version,
        )
        return {"items": rows[0]["items"], "total": int(rows[0]["total"])}

    async def get_source(self, source_id: str) -> dict[str, Any]:
        rows = await self._call("rag_get_source", p_source_id=source_id)
        if not rows:
            raise NotFound(f"source {source_id!r} not found")
        source: dict[str, Any] = rows[0]["source"]
        return source

    async def delete_source(self, source_id: str) -> None:
        """Delete the source with every generation, page, chunk, vector and code example."""
        if not await self._call("rag_delete_source", p_source_id=source_id):
            raise NotFound(f"source {source_id!r} not found")

    async def get_pages(self, page_ids: list[int]) -> list[dict[str, Any]]:
        """Full pages (markdown) of active generations, in the order asked; unknown ids are skipped."""
        if not page_ids:
            return []
        return await self._call("rag_get_pages", p_page_ids=[int(i) for i in page_ids])

    async def list_pages(self, source_id: str, *, section: str | None, limit: int, offset: int) -> PageRows:
        """A window of the source's active pages in URL order with their sizes, and how many pages
        the section has (section: see rag_page_in_section); NotFound for an unknown source."""
        return await self._source_window("rag_list_pages", source_id, limit=limit, offset=offset, p_section=section)

    async def list_code_examples(self, source_id: str, *, limit: int, offset: int) -> PageRows:
        """A window of the code examples of the source's active generation (by page URL, then their
        order on the page), and how many it has; NotFound for an unknown source."""
        return await self._source_window("rag_list_code_examples", source_id, limit=limit, offset=offset)

    async def _source_window(self, fn: str, source_id: str, *, limit: int, offset: int, **params: Any) -> PageRows:
        """A listing function's window of one source: its items and total (NotFound: no such source)."""
        if not 0 <= offset <= MAX_SQL_INT or not 1 <= limit <= MAX_PER_PAGE:
            raise InputError(f"offset must be 0..{MAX_SQL_INT} and limit 1..{MAX_PER_PAGE}")
        rows = await self._call(fn, p_source_id=source_id, p_limit=limit, p_offset=offset, **params)
        if not rows:
            raise NotFound(f"source {source_id!r} not found")
        return {"items": rows[0]["items"], "total": int(rows[0]["total"])}

    async def read_page(
        self, *, page_id: int | None = None, url: str | None = None, offset: int = 0, max_chars: int
    ) -> dict[str, Any]:
        """An active page by id or URL (see rag_read_page) with `content`: max_chars characters of its
        markdown from offset, and char_count / word_count of the whole page; NotFound when none matches."""
        rows = await self._call("rag_read_page", p_page_id=page_id, p_url=url, p_offset=offset, p_max_chars=max_chars)
        if not rows:
            wanted = f"page {page_id}" if page_id is not None else f"page with url {url!r}"
            raise NotFound(f"{wanted} not found (or not in the active generation of its source)")
        return rows[0]

    # -- vectors per model ----------------------------------------------------------------

    async def chunks_missing_embeddings(self, model: str, limit: int) -> list[tuple[int, str]]:
        rows = await self._call("rag_chunks_missing_embeddings", p_model=model, p_limit=limit)
        return [(int(r["chunk_id"]), r["content"]) for r in rows]

    async def set_embeddings(self, model: str, rows: list[tuple[int, list[float]]]) -> None:
        """Store vectors of `model` for existing chunks (chunks deleted meanwhile are skipped)."""
        if not rows:
            return
        await self._call(
            "rag_set_embeddings",
            p_model=model,
            p_chunk_ids=[chunk_id for chunk_id, _ in rows],
            p_embeddings=VectorsArg([vector for _, vector in rows]),
        )

    async def embedding_counts(self) -> dict[str, int]:
        rows = await self._call("rag_embedding_counts")
        return {r["model"]: int(r["vectors"]) for r in rows}
