-- The repeatable SQL functions (store/functions/*.sql) are recorded here with their checksums;
-- any difference re-applies all of them. Row level security on every table: on Supabase the
-- public schema is exposed through PostgREST to anon and authenticated, and the knowledge base
-- is reached only with the service key (owners and service_role bypass RLS). Enabling it is
-- idempotent, so databases that already had it from the retired 0005_security are unchanged.

CREATE TABLE IF NOT EXISTS rag_schema_functions (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE rag_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_pages ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_chunk_embeddings ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_embedding_spaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_code_examples ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_schema_migrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_schema_functions ENABLE ROW LEVEL SECURITY;
