-- On Supabase the public schema is exposed through PostgREST to the anon and authenticated
-- roles. The knowledge base is reached only with the service key, so: row level security on
-- every table (owners and service_role bypass it) and no EXECUTE on rag_* functions for others.
-- A later migration that adds tables or functions must do the same for them.

ALTER TABLE rag_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_pages ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_chunk_embeddings ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_embedding_spaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_code_examples ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_schema_migrations ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    v_fn regprocedure;
    v_role text;
BEGIN
    FOR v_fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'rag\_%'
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_fn);
        FOREACH v_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
                EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %I', v_fn, v_role);
            END IF;
        END LOOP;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', v_fn);
        END IF;
    END LOOP;
END $$;
