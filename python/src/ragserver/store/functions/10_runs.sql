-- Generations: begin a run, write staged documents into it, then commit (switch the source's
-- active generation, drop the old one) or fail (drop the staged rows). Each function is one
-- statement, hence one transaction, over psycopg and over Supabase RPC alike.
--
-- A progressive run (asked for by a crawl, granted when its source has no content yet) is the
-- source's active generation from its start: each page it writes is searchable once written.
-- Stopped before its commit (failed, cancelled, its process gone) it keeps what it wrote, as
-- 'partial'; the next run of the source is staged as usual and replaces it atomically.
--
-- Error codes the Store translates: no_data_found (P0002) -> NotFound, invalid_parameter_value
-- (22023) and data_exception (22000) -> InputError, object_not_in_prerequisite_state (55000) -> InputError.

CREATE OR REPLACE FUNCTION rag_text_array(p_value jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(SELECT jsonb_array_elements_text(
    CASE WHEN jsonb_typeof(p_value) = 'array' THEN p_value ELSE '[]'::jsonb END));

-- Registers a model's vector space and its partial HNSW index; a model keeps one dimension.
CREATE OR REPLACE FUNCTION rag_ensure_embedding_space(p_model text, p_dimension integer)
RETURNS TABLE (model text, dimension integer, index_name text, created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_space rag_embedding_spaces;
    v_index text;
BEGIN
    IF coalesce(p_model, '') = '' THEN
        RAISE EXCEPTION 'embedding model name is empty' USING ERRCODE = '22023';
    END IF;
    IF p_dimension IS NULL OR p_dimension < 1 OR p_dimension > 2000 THEN
        RAISE EXCEPTION 'embedding dimension must be 1..2000, got %', p_dimension USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('rag_embedding_space:' || p_model, 0));
    SELECT * INTO v_space FROM rag_embedding_spaces s WHERE s.model = p_model;
    IF FOUND THEN
        IF v_space.dimension <> p_dimension THEN
            RAISE EXCEPTION 'embedding model % has dimension %, not %', p_model, v_space.dimension, p_dimension
                USING ERRCODE = '22000';
        END IF;
        RETURN QUERY SELECT v_space.model, v_space.dimension, v_space.index_name, false;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM rag_chunk_embeddings e
               WHERE e.model = p_model AND vector_dims(e.embedding) <> p_dimension) THEN
        RAISE EXCEPTION 'stored vectors of % do not have dimension %', p_model, p_dimension
            USING ERRCODE = '22000';
    END IF;
    v_index := 'rag_emb_hnsw_' || substr(md5(p_model), 1, 16);
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON rag_chunk_embeddings '
        'USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE model = %L',
        v_index, p_dimension, p_model);
    INSERT INTO rag_embedding_spaces (model, dimension, index_name) VALUES (p_model, p_dimension, v_index);
    RETURN QUERY SELECT p_model, p_dimension, v_index, true;
END $$;

-- Checks one batch of vectors (NULL elements: rows without one) against the model's space
-- (creating it on first use).
CREATE OR REPLACE FUNCTION rag_check_vectors(p_model text, p_vectors vector[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_dims integer[];
BEGIN
    SELECT array_agg(DISTINCT vector_dims(v)) INTO v_dims FROM unnest(p_vectors) AS v WHERE v IS NOT NULL;
    IF v_dims IS NULL THEN
        RETURN;
    END IF;
    IF coalesce(p_model, '') = '' THEN
        RAISE EXCEPTION 'an embedding model name is required with vectors' USING ERRCODE = '22023';
    END IF;
    IF cardinality(v_dims) > 1 THEN
        RAISE EXCEPTION 'vectors of different dimensions % in one batch', v_dims USING ERRCODE = '22000';
    END IF;
    PERFORM rag_ensure_embedding_space(p_model, v_dims[1]);
END $$;

-- Deletes every row written by the given runs (pages, chunks, vectors, code examples).
CREATE OR REPLACE FUNCTION rag_delete_generations(p_run_ids bigint[])
RETURNS void
LANGUAGE sql AS $$
    DELETE FROM rag_chunk_embeddings WHERE run_id = ANY(p_run_ids);
    DELETE FROM rag_code_examples WHERE run_id = ANY(p_run_ids);
    DELETE FROM rag_chunks WHERE run_id = ANY(p_run_ids);
    DELETE FROM rag_pages WHERE run_id = ANY(p_run_ids);
$$;

-- Starts a new generation of a source (creating or updating the source row); progressive (see
-- above) when p_progressive and the source has no active generation.
-- p_source: {source_id, title, origin, knowledge_type, tags: [..], metadata: {..}}
CREATE OR REPLACE FUNCTION rag_begin_run(
    p_source jsonb, p_kind text, p_owner_lock bigint DEFAULT NULL, p_progressive boolean DEFAULT false)
RETURNS TABLE (run_id bigint, progressive boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_source_id text := p_source ->> 'source_id';
    v_progressive boolean;
    v_run bigint;
BEGIN
    IF coalesce(v_source_id, '') = '' THEN
        RAISE EXCEPTION 'source_id is empty' USING ERRCODE = '22023';
    END IF;
    IF coalesce(p_kind, '') = '' THEN
        RAISE EXCEPTION 'run kind is empty' USING ERRCODE = '22023';
    END IF;
    INSERT INTO rag_sources AS s (source_id, title, origin, knowledge_type, tags, metadata)
    VALUES (v_source_id,
            coalesce(p_source ->> 'title', ''),
            coalesce(p_source ->> 'origin', ''),
            coalesce(p_source ->> 'knowledge_type', 'technical'),
            rag_text_array(p_source -> 'tags'),
            coalesce(p_source -> 'metadata', '{}'))
    ON CONFLICT (source_id) DO UPDATE
        SET title = EXCLUDED.title, origin = EXCLUDED.origin, knowledge_type = EXCLUDED.knowledge_type,
            tags = EXCLUDED.tags, metadata = EXCLUDED.metadata, updated_at = now();
    -- the upsert holds the source row: no other run can become active in between
    SELECT coalesce(p_progressive, false) AND s.active_run_id IS NULL INTO v_progressive
    FROM rag_sources s WHERE s.source_id = v_source_id;
    INSERT INTO rag_runs (source_id, kind, owner_lock, progressive)
    VALUES (v_source_id, p_kind, p_owner_lock, v_progressive)
    RETURNING rag_runs.run_id INTO v_run;
    IF v_progressive THEN
        UPDATE rag_sources s SET active_run_id = v_run, updated_at = now() WHERE s.source_id = v_source_id;
    END IF;
    RETURN QUERY SELECT v_run, v_progressive;
END $$;

-- The rows a run has written so far.
CREATE OR REPLACE FUNCTION rag_run_counts(p_run_id bigint)
RETURNS TABLE (pages integer, chunks integer, code_examples integer)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*)::integer FROM rag_pages p WHERE p.run_id = p_run_id),
           (SELECT count(*)::integer FROM rag_chunks c WHERE c.run_id = p_run_id),
           (SELECT count(*)::integer FROM rag_code_examples e WHERE e.run_id = p_run_id)
$$;

-- Marks a run alive (recovery of runs without an owner lock goes by this). SKIP LOCKED:
-- concurrent writers of the same run hold FOR SHARE locks; waiting here would deadlock.
CREATE OR REPLACE FUNCTION rag_touch_run(p_run_id bigint)
RETURNS void
LANGUAGE sql AS $$
    UPDATE rag_runs r SET heartbeat_at = now()
    WHERE r.run_id IN (SELECT h.run_id FROM rag_runs h
                       WHERE h.run_id = p_run_id AND h.heartbeat_at < now() - interval '5 seconds'
                       FOR NO KEY UPDATE SKIP LOCKED);
$$;

-- Ends a running run (locked by the caller) that did not commit: a progressive run that is still
-- its source's content and wrote pages becomes 'partial' with its counts and keeps its rows;
-- any other gets p_status and loses its rows. Returns the status it got.
CREATE OR REPLACE FUNCTION rag_end_unfinished_run(p_run rag_runs, p_status text, p_error text)
RETURNS text
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_counts record;
BEGIN
    IF p_run.progressive
       AND EXISTS (SELECT 1 FROM rag_sources s WHERE s.source_id = p_run.source_id AND s.active_run_id = p_run.run_id)
       AND EXISTS (SELECT 1 FROM rag_pages p WHERE p.run_id = p_run.run_id) THEN
        SELECT * INTO v_counts FROM rag_run_counts(p_run.run_id);
        UPDATE rag_runs r
        SET status = 'partial', error = p_error, finished_at = now(),
            page_count = v_counts.pages, chunk_count = v_counts.chunks, code_example_count = v_counts.code_examples
        WHERE r.run_id = p_run.run_id;
        RETURN 'partial';
    END IF;
    UPDATE rag_runs r SET status = p_status, error = p_error, finished_at = now() WHERE r.run_id = p_run.run_id;
    PERFORM rag_delete_generations(ARRAY[p_run.run_id]);
    UPDATE rag_sources s SET active_run_id = NULL WHERE s.source_id = p_run.source_id AND s.active_run_id = p_run.run_id;
    RETURN p_status;
END $$;

-- Locks a run that must still be running; raises NotFound / not-running otherwise.
CREATE OR REPLACE FUNCTION rag_lock_running_run(p_source_id text, p_run_id bigint, p_exclusive boolean)
RETURNS rag_runs
LANGUAGE plpgsql AS $$
DECLARE
    v_run rag_runs;
BEGIN
    IF p_exclusive THEN
        SELECT * INTO v_run FROM rag_runs r WHERE r.run_id = p_run_id AND r.source_id = p_source_id FOR UPDATE;
    ELSE
        SELECT * INTO v_run FROM rag_runs r WHERE r.run_id = p_run_id AND r.source_id = p_source_id FOR SHARE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % of source % not found', p_run_id, p_source_id USING ERRCODE = 'P0002';
    END IF;
    IF v_run.status <> 'running' THEN
        RAISE EXCEPTION 'run % is %, not running', p_run_id, v_run.status USING ERRCODE = '55000';
    END IF;
    RETURN v_run;
END $$;

-- Writes one document of a running generation: page, chunks (+ vectors), code examples.
-- p_payload: {source_id, run_id, url, title, markdown, metadata, embedding_model,
--             etag, last_modified, content_hash, links: [..] (what a refresh compares; may be absent),
--             chunks: [{index, content, heading_path, metadata}],
--             code_examples: [{index, code, language, context, heading_path}]}
-- p_embeddings: the vector of each chunk, in the order of `chunks` (a NULL element: none), or
-- NULL for none at all. A typed parameter, not JSON: each vector is read once, by the driver's
-- binary form over psycopg or pgvector's text form over PostgREST.
CREATE OR REPLACE FUNCTION rag_write_document(p_payload jsonb, p_embeddings vector[])
RETURNS TABLE (page_id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_source_id text := p_payload ->> 'source_id';
    v_run_id bigint := (p_payload ->> 'run_id')::bigint;
    v_model text := p_payload ->> 'embedding_model';
    v_chunks jsonb := coalesce(p_payload -> 'chunks', '[]');
    v_page bigint;
BEGIN
    PERFORM rag_lock_running_run(v_source_id, v_run_id, false);
    IF p_payload ->> 'markdown' IS NULL OR p_payload ->> 'url' IS NULL THEN
        RAISE EXCEPTION 'a document needs url and markdown' USING ERRCODE = '22023';
    END IF;
    IF (SELECT count(DISTINCT c ->> 'index') <> count(*) FROM jsonb_array_elements(v_chunks) c) THEN
        RAISE EXCEPTION 'chunk indexes of a document must be unique' USING ERRCODE = '22023';
    END IF;
    IF p_embeddings IS NOT NULL AND coalesce(cardinality(p_embeddings), 0) <> jsonb_array_length(v_chunks) THEN
        RAISE EXCEPTION '% embeddings for % chunks', coalesce(cardinality(p_embeddings), 0),
            jsonb_array_length(v_chunks) USING ERRCODE = '22023';
    END IF;
    PERFORM rag_check_vectors(v_model, p_embeddings);

    INSERT INTO rag_pages (source_id, run_id, url, title, markdown, metadata, etag, last_modified, content_hash, links)
    VALUES (v_source_id, v_run_id, p_payload ->> 'url', coalesce(p_payload ->> 'title', ''),
            p_payload ->> 'markdown', coalesce(p_payload -> 'metadata', '{}'), p_payload ->> 'etag',
            p_payload ->> 'last_modified', p_payload ->> 'content_hash', rag_text_array(p_payload -> 'links'))
    RETURNING rag_pages.page_id INTO v_page;

    WITH src AS (
        SELECT (c ->> 'index')::integer AS chunk_index, c, p_embeddings[ord] AS embedding
        FROM jsonb_array_elements(v_chunks) WITH ORDINALITY AS t(c, ord)
    ), ins AS (
        INSERT INTO rag_chunks (page_id, source_id, run_id, chunk_index, content, heading_path, metadata)
        SELECT v_page, v_source_id, v_run_id, src.chunk_index, coalesce(src.c ->> 'content', ''),
               rag_text_array(src.c -> 'heading_path'), coalesce(src.c -> 'metadata', '{}')
        FROM src
        RETURNING rag_chunks.chunk_id, rag_chunks.chunk_index
    )
    INSERT INTO rag_chunk_embeddings (chunk_id, model, run_id, embedding)
    SELECT ins.chunk_id, v_model, v_run_id, src.embedding
    FROM ins JOIN src ON src.chunk_index = ins.chunk_index
    WHERE src.embedding IS NOT NULL;

    INSERT INTO rag_code_examples (page_id, source_id, run_id, example_index, code, language, context, heading_path)
    SELECT v_page, v_source_id, v_run_id, coalesce((e ->> 'index')::integer, 0), coalesce(e ->> 'code', ''),
           coalesce(e ->> 'language', ''), coalesce(e ->> 'context', ''), rag_text_array(e -> 'heading_path')
    FROM jsonb_array_elements(coalesce(p_payload -> 'code_examples', '[]')) e;

    PERFORM rag_touch_run(v_run_id);
    RETURN QUERY SELECT v_page;
END $$;

-- Copies a page of an earlier generation of the source, unchanged, into a running one: the page
-- with its chunks, their vectors (every model's) and its code examples, so a refresh neither
-- chunks nor embeds it again. p_page: {etag, last_modified} as the new fetch left them, and
-- links when they were read again (absent: the old ones). Empty when that page no longer exists.
CREATE OR REPLACE FUNCTION rag_carry_page(p_source_id text, p_run_id bigint, p_page_id bigint, p_page jsonb)
RETURNS TABLE (page_id bigint, chunks integer, code_examples integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_old rag_pages;
    v_page bigint;
    v_chunks integer;
    v_examples integer;
BEGIN
    PERFORM rag_lock_running_run(p_source_id, p_run_id, false);
    SELECT * INTO v_old FROM rag_pages p WHERE p.page_id = p_page_id AND p.source_id = p_source_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO rag_pages (source_id, run_id, url, title, markdown, metadata, etag, last_modified, content_hash, links)
    VALUES (p_source_id, p_run_id, v_old.url, v_old.title, v_old.markdown, v_old.metadata,
            p_page ->> 'etag', p_page ->> 'last_modified', v_old.content_hash,
            CASE WHEN p_page ? 'links' THEN rag_text_array(p_page -> 'links') ELSE v_old.links END)
    RETURNING rag_pages.page_id INTO v_page;

    WITH old AS (
        SELECT c.chunk_id, c.chunk_index, c.content, c.heading_path, c.metadata
        FROM rag_chunks c WHERE c.page_id = p_page_id
    ), ins AS (
        INSERT INTO rag_chunks (page_id, source_id, run_id, chunk_index, content, heading_path, metadata)
        SELECT v_page, p_source_id, p_run_id, old.chunk_index, old.content, old.heading_path, old.metadata FROM old
        RETURNING rag_chunks.chunk_id, rag_chunks.chunk_index
    )
    INSERT INTO rag_chunk_embeddings (chunk_id, model, run_id, embedding)
    SELECT ins.chunk_id, e.model, p_run_id, e.embedding
    FROM ins JOIN old ON old.chunk_index = ins.chunk_index
    JOIN rag_chunk_embeddings e ON e.chunk_id = old.chunk_id;
    SELECT count(*) INTO v_chunks FROM rag_chunks c WHERE c.page_id = v_page;

    INSERT INTO rag_code_examples (page_id, source_id, run_id, example_index, code, language, context, heading_path)
    SELECT v_page, p_source_id, p_run_id, e.example_index, e.code, e.language, e.context, e.heading_path
    FROM rag_code_examples e WHERE e.page_id = p_page_id;
    GET DIAGNOSTICS v_examples = ROW_COUNT;

    PERFORM rag_touch_run(p_run_id);
    RETURN QUERY SELECT v_page, v_chunks, v_examples;
END $$;

-- What a refresh compares with: each page of the source's active generation with the validators
-- it was fetched with and its content hash, as one JSON array (RPC answers stay one row).
CREATE OR REPLACE FUNCTION rag_previous_pages(p_source_id text)
RETURNS TABLE (pages jsonb)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'page_id', p.page_id, 'url', p.url, 'etag', p.etag,
               'last_modified', p.last_modified, 'content_hash', p.content_hash) ORDER BY p.page_id), '[]'::jsonb)
    FROM rag_sources s JOIN rag_pages p ON p.run_id = s.active_run_id
    WHERE s.source_id = p_source_id
$$;

-- The links a stored page had (a page that answers 304 is still followed); empty when unknown.
CREATE OR REPLACE FUNCTION rag_page_links(p_page_id bigint)
RETURNS TABLE (links jsonb)
LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(p.links) FROM rag_pages p WHERE p.page_id = p_page_id
$$;

-- Makes a running generation the source's content and deletes the generations it replaces
-- (runs still running for the same source keep their staged rows).
CREATE OR REPLACE FUNCTION rag_commit_run(p_source_id text, p_run_id bigint)
RETURNS TABLE (pages integer, chunks integer, code_examples integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_pages integer;
    v_chunks integer;
    v_examples integer;
    v_old bigint[];
BEGIN
    PERFORM 1 FROM rag_sources s WHERE s.source_id = p_source_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'source % not found', p_source_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM rag_lock_running_run(p_source_id, p_run_id, true);
    SELECT c.pages, c.chunks, c.code_examples INTO v_pages, v_chunks, v_examples FROM rag_run_counts(p_run_id) c;
    UPDATE rag_runs r
    SET status = 'completed', finished_at = now(), heartbeat_at = now(),
        page_count = v_pages, chunk_count = v_chunks, code_example_count = v_examples
    WHERE r.run_id = p_run_id;
    SELECT coalesce(array_agg(r.run_id), '{}') INTO v_old FROM rag_runs r
    WHERE r.source_id = p_source_id AND r.run_id <> p_run_id AND r.status <> 'running';
    PERFORM rag_delete_generations(v_old);
    UPDATE rag_sources s SET active_run_id = p_run_id, updated_at = now() WHERE s.source_id = p_source_id;
    -- Full-text ranking takes its IDF from the planner statistics: refresh them now when this
    -- generation is a large part of the table, instead of waiting for autovacuum.
    IF v_chunks > 0.1 * (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'rag_chunks'::regclass) THEN
        ANALYZE rag_chunks, rag_code_examples;
    END IF;
    RETURN QUERY SELECT v_pages, v_chunks, v_examples;
END $$;

-- Ends a running generation as failed or cancelled and deletes its staged rows (a progressive
-- run keeps them as 'partial', see rag_end_unfinished_run). A run that is no longer running is
-- left as it is (cleanup paths may call this twice).
CREATE OR REPLACE FUNCTION rag_fail_run(p_source_id text, p_run_id bigint, p_status text, p_error text)
RETURNS TABLE (status text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_run rag_runs;
BEGIN
    IF p_status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'status must be failed or cancelled, got %', p_status USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_run FROM rag_runs r WHERE r.run_id = p_run_id AND r.source_id = p_source_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % of source % not found', p_run_id, p_source_id USING ERRCODE = 'P0002';
    END IF;
    IF v_run.status = 'running' THEN
        v_run.status := rag_end_unfinished_run(v_run, p_status, p_error);
    END IF;
    RETURN QUERY SELECT v_run.status;
END $$;

-- Fails runs whose owner is gone (progressive ones become 'partial', see rag_end_unfinished_run):
-- the owner's advisory lock is free (direct connections) and, when it is a server replica, its
-- operations missed heartbeats for p_grace_seconds (a live replica whose session dropped takes
-- its lock again meanwhile), or, for owners without a lock (Supabase RPC), nothing was written
-- for p_stale_seconds.
CREATE OR REPLACE FUNCTION rag_recover_interrupted_runs(p_stale_seconds integer DEFAULT 600,
                                                        p_grace_seconds integer DEFAULT 0)
RETURNS TABLE (run_id bigint, source_id text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_run rag_runs;
BEGIN
    FOR v_run IN
        SELECT * FROM rag_runs r WHERE r.status = 'running' ORDER BY r.run_id FOR UPDATE SKIP LOCKED
    LOOP
        IF (v_run.owner_lock IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM rag_operations o
                            WHERE o.owner_lock = v_run.owner_lock AND o.status IN ('starting', 'running', 'cancelling')
                              AND o.heartbeat_at >= now() - make_interval(secs => p_grace_seconds))
            AND pg_try_advisory_xact_lock(v_run.owner_lock))
           OR (v_run.owner_lock IS NULL
               AND v_run.heartbeat_at < now() - make_interval(secs => coalesce(p_stale_seconds, 600))) THEN
            PERFORM rag_end_unfinished_run(v_run, 'failed', 'interrupted: the process running it stopped');
            run_id := v_run.run_id;
            source_id := v_run.source_id;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;
