"""Databases as earlier releases of ragserver made them, and what a schema looks like in the catalog.

- `build_release(conn, commit)` applies the migration files released at `commit` (listed by
  checksum in tests/fixtures/schema_history/releases.json: a file that still ships unchanged is
  read from the package, every other one from the fixture's sql/ folder, copied from git) the way
  that release's code did: each file, then its row with its checksum in rag_schema_migrations.
- `write_old_data(conn)` writes a knowledge base through that release's own rag_* functions.
- `schema_catalog(conn)` is everything an upgrade must get right, read from the catalog: the
  rag_* functions (pg_get_functiondef and privileges), composite types, tables, columns, indexes,
  constraints, RLS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ragserver.store.schema_files import SqlFile, shipped_migrations

HISTORY = Path(__file__).resolve().parent.parent / "fixtures" / "schema_history"
FIRST_RELEASE = "afedfbf"
LAST_RELEASE = "aaf96e8"  # the last release before functions moved to store/functions/

# rag_schema_migrations as every earlier release created it
OLD_RECORD_TABLE = """
CREATE TABLE IF NOT EXISTS rag_schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""

MODEL = "old/model"
DIMENSION = 4

CATALOG_QUERIES = {
    "functions": r"""
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), coalesce(p.proacl::text, '')
        FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'rag\_%'""",
    "columns": r"""
        SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, ''),
               coalesce(generation_expression, ''), is_identity
        FROM information_schema.columns WHERE table_schema = current_schema() AND table_name LIKE 'rag\_%'""",
    "indexes": r"""
        SELECT indexname, indexdef FROM pg_indexes
        WHERE schemaname = current_schema() AND tablename LIKE 'rag\_%'""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = current_schema()::regnamespace""",
    "types": """
        SELECT t.typname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
        FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE t.typnamespace = current_schema()::regnamespace""",
    "tables": """
        SELECT relname, relkind::text, relrowsecurity FROM pg_class
        WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p', 'v', 'm')""",
}


def release_files(commit: str) -> list[SqlFile]:
    """The migration files released at `commit`, in the order that release applied them."""
    released = json.loads((HISTORY / "releases.json").read_text(encoding="utf-8"))[commit]
    shipped = {(m.name, m.checksum): m for m in shipped_migrations()}
    files = []
    for name, checksum in sorted(released.items()):
        file = shipped.get((name, checksum)) or SqlFile(
            name, (HISTORY / "sql" / f"{name}-{checksum[:12]}.sql").read_text(encoding="utf-8")
        )
        assert file.checksum == checksum, f"{name} of {commit} is not the file that release shipped"
        files.append(file)
    return files


async def build_release(conn: AsyncConnection, commit: str) -> None:
    """An empty database migrated by the release at `commit` (on an autocommit connection)."""
    await conn.execute(OLD_RECORD_TABLE)
    for file in release_files(commit):
        async with conn.transaction():
            await conn.execute(file.sql.encode())
            await conn.execute(
                "INSERT INTO rag_schema_migrations (name, checksum) VALUES (%s, %s)", (file.name, file.checksum)
            )


async def _call(conn: AsyncConnection, fn: str, **params: Any) -> list[tuple[Any, ...]]:
    args = ", ".join(f"{name} => %({name})s" for name in params)
    values = {k: Jsonb(v) if isinstance(v, dict | list) else v for k, v in params.items()}
    cur = await conn.execute(f"SELECT * FROM {fn}({args})", values)  # fn: a literal of this module
    return await cur.fetchall()


def _vector(i: int) -> str:
    return "[" + ",".join("1.0" if j == i % DIMENSION else "0.0" for j in range(DIMENSION)) + "]"


OLD_PAGES = {
    "https://old.example/compass": ["The brass compass points north.", "Calibrate the compass yearly."],
    "https://old.example/kettle": ["The copper kettle whistles at dawn."],
}
OLD_CODE = "def boil(kettle):\n    return kettle.heat(100)\n"
OLD_NOTE = "An oil lantern lights the shed."


def _document(
    source_id: str, run_id: int, url: str, title: str, texts: list[str], model: str | None, first: int
) -> dict[str, Any]:
    """rag_write_document's payload as the earlier Store built it: with a model, chunk i has the
    one-hot vector of axis first + i."""
    chunks = [
        {"index": i, "content": text, "heading_path": ["Old", f"Part {i}"], "metadata": {}}
        | ({"embedding": _vector(first + i)} if model else {})
        for i, text in enumerate(texts)
    ]
    code = [{"index": 0, "code": OLD_CODE, "language": "python", "context": "boiling the kettle", "heading_path": []}]
    return {
        "source_id": source_id,
        "run_id": run_id,
        "url": url,
        "title": title,
        "markdown": "\n\n".join(texts),
        "metadata": {"written_by": "an earlier release"},
        "embedding_model": model,
        "chunks": chunks,
        "code_examples": code if "kettle" in url else [],
    }


async def _generation(
    conn: AsyncConnection,
    source: dict[str, Any],
    kind: str,
    pages: dict[str, list[str]],
    *,
    title_prefix: str,
    model: str | None,
) -> None:
    """One committed run of `source` with a page per url."""
    (run_id,) = (await _call(conn, "rag_begin_run", p_source=source, p_kind=kind, p_owner_lock=None))[0]
    first = 0
    for url, texts in pages.items():
        title = f"{title_prefix} {url.rsplit('/', 1)[-1]}"
        payload = _document(source["source_id"], run_id, url, title, texts, model, first)
        await _call(conn, "rag_write_document", p_payload=payload)
        first += len(texts)
    await _call(conn, "rag_commit_run", p_source_id=source["source_id"], p_run_id=run_id)


async def write_old_data(conn: AsyncConnection) -> None:
    """Two generations of a source with vectors of MODEL and a code example, plus a source
    without vectors, written through the release's own functions, the way its Store called them."""
    docs = {"source_id": "old-docs", "title": "Old docs", "origin": "https://old.example", "tags": ["old"]}
    for generation in ("first", "second"):
        await _generation(conn, docs, "crawl", OLD_PAGES, title_prefix=generation, model=MODEL)
    notes = {"source_id": "old-notes", "title": "Notes", "origin": "file://notes"}
    await _generation(conn, notes, "upload", {"notes.md": [OLD_NOTE]}, title_prefix="notes", model=None)


async def schema_catalog(conn: AsyncConnection) -> dict[str, list[tuple[Any, ...]]]:
    """The schema as the catalog describes it, each part sorted."""
    catalog = {}
    for part, query in CATALOG_QUERIES.items():
        cur = await conn.execute(query)
        catalog[part] = sorted(await cur.fetchall())
    return catalog


async def table_contents(conn: AsyncConnection) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of the knowledge base (everything but the schema records), sorted."""
    queries = {
        "sources": "SELECT source_id, title, origin, tags, active_run_id FROM rag_sources",
        "runs": "SELECT run_id, source_id, kind, status, page_count, chunk_count, code_example_count FROM rag_runs",
        "pages": "SELECT page_id, source_id, run_id, url, title, markdown, metadata FROM rag_pages",
        "chunks": "SELECT chunk_id, page_id, run_id, chunk_index, content, heading_path, tsv::text FROM rag_chunks",
        "vectors": "SELECT chunk_id, model, run_id, embedding::text FROM rag_chunk_embeddings",
        "spaces": "SELECT model, dimension, index_name FROM rag_embedding_spaces",
        "code": "SELECT code_example_id, page_id, run_id, code, language, context, tsv::text FROM rag_code_examples",
    }
    contents = {}
    for table, query in queries.items():
        cur = await conn.execute(query)
        contents[table] = sorted(await cur.fetchall(), key=repr)
    return contents
