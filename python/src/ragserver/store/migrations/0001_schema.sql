-- Tables of ragserver. Every read and write goes through the rag_* functions of the later
-- migrations, so the same Store works over psycopg and over Supabase RPC.

CREATE EXTENSION IF NOT EXISTS vector;

-- Heading paths are text[]; array_to_string is only STABLE in general, but for text[] it is
-- immutable, which the generated tsvector columns below need.
CREATE OR REPLACE FUNCTION rag_heading_text(p_path text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(array_to_string(p_path, ' '), '');

CREATE TABLE IF NOT EXISTS rag_sources (
    source_id      text PRIMARY KEY,
    title          text NOT NULL DEFAULT '',
    origin         text NOT NULL DEFAULT '',
    knowledge_type text NOT NULL DEFAULT 'technical',
    tags           text[] NOT NULL DEFAULT '{}',
    metadata       jsonb NOT NULL DEFAULT '{}',
    active_run_id  bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One run = one generation of a source's content. Rows written by a run stay invisible to
-- search until rag_commit_run makes it the source's active_run_id.
CREATE TABLE IF NOT EXISTS rag_runs (
    run_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id     text NOT NULL REFERENCES rag_sources(source_id) ON DELETE CASCADE,
    kind          text NOT NULL,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    error         text,
    page_count    integer NOT NULL DEFAULT 0,
    chunk_count   integer NOT NULL DEFAULT 0,
    code_example_count integer NOT NULL DEFAULT 0,
    -- advisory lock key the owning process holds for its lifetime (psycopg); NULL over RPC
    owner_lock    bigint,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX IF NOT EXISTS rag_runs_source_idx ON rag_runs (source_id, run_id DESC);
CREATE INDEX IF NOT EXISTS rag_runs_running_idx ON rag_runs (run_id) WHERE status = 'running';

DO $$
BEGIN
    ALTER TABLE rag_sources ADD CONSTRAINT rag_sources_active_run_fk
        FOREIGN KEY (active_run_id) REFERENCES rag_runs(run_id) ON DELETE SET NULL;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS rag_pages (
    page_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id  text NOT NULL REFERENCES rag_sources(source_id) ON DELETE CASCADE,
    run_id     bigint NOT NULL REFERENCES rag_runs(run_id) ON DELETE CASCADE,
    url        text NOT NULL,
    title      text NOT NULL DEFAULT '',
    markdown   text NOT NULL,
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rag_pages_run_idx ON rag_pages (run_id);
CREATE INDEX IF NOT EXISTS rag_pages_source_idx ON rag_pages (source_id);

CREATE TABLE IF NOT EXISTS rag_chunks (
    chunk_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id      bigint NOT NULL REFERENCES rag_pages(page_id) ON DELETE CASCADE,
    source_id    text NOT NULL,
    run_id       bigint NOT NULL,
    chunk_index  integer NOT NULL,
    content      text NOT NULL,
    heading_path text[] NOT NULL DEFAULT '{}',
    metadata     jsonb NOT NULL DEFAULT '{}',
    tsv          tsvector GENERATED ALWAYS AS (
                     setweight(to_tsvector('english'::regconfig, rag_heading_text(heading_path)), 'A')
                     || setweight(to_tsvector('english'::regconfig, content), 'B')
                 ) STORED
);
CREATE INDEX IF NOT EXISTS rag_chunks_page_idx ON rag_chunks (page_id, chunk_index);
CREATE INDEX IF NOT EXISTS rag_chunks_run_idx ON rag_chunks (run_id);
CREATE INDEX IF NOT EXISTS rag_chunks_tsv_idx ON rag_chunks USING gin (tsv);

-- Vectors remember the model that made them. The column is untyped `vector`; each model gets
-- a partial HNSW index on embedding::vector(N) (rag_ensure_embedding_space). run_id is copied
-- from the chunk so the vector search filters on the active generation without a join.
CREATE TABLE IF NOT EXISTS rag_chunk_embeddings (
    chunk_id  bigint NOT NULL REFERENCES rag_chunks(chunk_id) ON DELETE CASCADE,
    model     text NOT NULL,
    run_id    bigint NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (chunk_id, model)
);
CREATE INDEX IF NOT EXISTS rag_chunk_embeddings_model_idx ON rag_chunk_embeddings (model);
CREATE INDEX IF NOT EXISTS rag_chunk_embeddings_run_idx ON rag_chunk_embeddings (run_id);

CREATE TABLE IF NOT EXISTS rag_embedding_spaces (
    model      text PRIMARY KEY,
    dimension  integer NOT NULL CHECK (dimension > 0 AND dimension <= 2000),
    index_name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS rag_code_examples (
    code_example_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id      bigint NOT NULL REFERENCES rag_pages(page_id) ON DELETE CASCADE,
    source_id    text NOT NULL,
    run_id       bigint NOT NULL,
    example_index integer NOT NULL,
    code         text NOT NULL,
    language     text NOT NULL DEFAULT '',
    context      text NOT NULL DEFAULT '',
    heading_path text[] NOT NULL DEFAULT '{}',
    tsv          tsvector GENERATED ALWAYS AS (
                     setweight(to_tsvector('english'::regconfig, rag_heading_text(heading_path)), 'A')
                     || setweight(to_tsvector('english'::regconfig, context), 'B')
                     || setweight(to_tsvector('english'::regconfig, code), 'C')
                 ) STORED
);
CREATE INDEX IF NOT EXISTS rag_code_examples_page_idx ON rag_code_examples (page_id);
CREATE INDEX IF NOT EXISTS rag_code_examples_run_idx ON rag_code_examples (run_id);
CREATE INDEX IF NOT EXISTS rag_code_examples_tsv_idx ON rag_code_examples USING gin (tsv);
