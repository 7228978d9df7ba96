-- Sources, pages, vectors per model, schema version: the reads and writes around ingest/search.

-- One source as JSON (timestamps as ISO strings over both transports). The counts are those of
-- the active generation: recorded when it ended, counted live while a first crawl still writes
-- it; `partial` says that generation is not a finished one (a first crawl running or stopped).
CREATE OR REPLACE FUNCTION rag_source_json(p_source rag_sources) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'source_id', p_source.source_id,
        'title', p_source.title,
        'origin', p_source.origin,
        'knowledge_type', p_source.knowledge_type,
        'tags', to_jsonb(p_source.tags),
        'metadata', p_source.metadata,
        'library', p_source.metadata ->> 'library',
        'version', p_source.metadata ->> 'version',
        'page_count', coalesce(live.pages, active.page_count, 0),
        'chunk_count', coalesce(live.chunks, active.chunk_count, 0),
        'code_example_count', coalesce(live.code_examples, active.code_example_count, 0),
        'active_run_id', p_source.active_run_id,
        'partial', coalesce(active.status <> 'completed', false),
        'last_run_id', last.run_id,
        'last_run_kind', last.kind,
        'last_run_status', last.status,
        'last_run_error', last.error,
        'last_run_at', coalesce(last.finished_at, last.started_at),
        'created_at', p_source.created_at,
        'updated_at', p_source.updated_at)
    FROM (SELECT 1) AS one
    LEFT JOIN rag_runs active ON active.run_id = p_source.active_run_id
    LEFT JOIN LATERAL (SELECT * FROM rag_run_counts(active.run_id) WHERE active.status = 'running') live ON true
    LEFT JOIN LATERAL (SELECT * FROM rag_runs r WHERE r.source_id = p_source.source_id
                       ORDER BY r.run_id DESC LIMIT 1) last ON true
$$;

-- Whether a source's metadata carries the library and version asked for (case-insensitive; a
-- NULL filter matches every source). Search and the source listing filter by it alike.
CREATE OR REPLACE FUNCTION rag_source_labelled(p_metadata jsonb, p_library text, p_version text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (p_library IS NULL OR lower(p_metadata ->> 'library') = lower(p_library))
       AND (p_version IS NULL OR lower(p_metadata ->> 'version') = lower(p_version));

CREATE OR REPLACE FUNCTION rag_list_sources(
    p_limit integer DEFAULT 50, p_offset integer DEFAULT 0, p_library text DEFAULT NULL, p_version text DEFAULT NULL)
RETURNS TABLE (items jsonb, total bigint)
LANGUAGE sql STABLE AS $$
    WITH labelled AS (SELECT * FROM rag_sources s WHERE rag_source_labelled(s.metadata, p_library, p_version))
    SELECT coalesce((SELECT jsonb_agg(rag_source_json(s) ORDER BY s.created_at DESC, s.source_id)
                     FROM (SELECT * FROM labelled
                           ORDER BY created_at DESC, source_id
                           LIMIT greatest(p_limit, 0) OFFSET greatest(p_offset, 0)) s), '[]'::jsonb),
           (SELECT count(*) FROM labelled)
$$;

-- Empty when the source does not exist (the Store raises NotFound).
CREATE OR REPLACE FUNCTION rag_get_source(p_source_id text)
RETURNS TABLE (source jsonb)
LANGUAGE sql STABLE AS $$
    SELECT rag_source_json(s) FROM rag_sources s WHERE s.source_id = p_source_id
$$;

-- Deletes a source with all its runs and rows; empty when it did not exist.
CREATE OR REPLACE FUNCTION rag_delete_source(p_source_id text)
RETURNS TABLE (source_id text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM rag_sources s WHERE s.source_id = p_source_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM rag_delete_generations(ARRAY(SELECT r.run_id FROM rag_runs r WHERE r.source_id = p_source_id));
    RETURN QUERY DELETE FROM rag_sources s WHERE s.source_id = p_source_id RETURNING s.source_id;
END $$;

-- Pages of active generations by id (p_page_ids: JSON array of ids), in the order asked.
CREATE OR REPLACE FUNCTION rag_get_pages(p_page_ids jsonb)
RETURNS TABLE (page_id bigint, source_id text, url text, title text, markdown text, metadata jsonb)
LANGUAGE sql STABLE AS $$
    SELECT p.page_id, p.source_id, p.url, p.title, p.markdown, p.metadata
    FROM jsonb_array_elements_text(p_page_ids) WITH ORDINALITY AS wanted(id, ord)
    JOIN rag_pages p ON p.page_id = wanted.id::bigint
    JOIN rag_sources s ON s.source_id = p.source_id AND s.active_run_id = p.run_id
    ORDER BY wanted.ord
$$;

-- The first heading of a page (the outermost heading of its first chunk that has one), NULL when
-- it has none: what a listing shows as the page's section.
CREATE OR REPLACE FUNCTION rag_page_heading(p_page_id bigint) RETURNS text
LANGUAGE sql STABLE
RETURN (SELECT c.heading_path[1] FROM rag_chunks c
        WHERE c.page_id = p_page_id AND cardinality(c.heading_path) > 0
        ORDER BY c.chunk_index LIMIT 1);

-- Words of a text as Python's str.split() counts them: runs of non-blank characters.
CREATE OR REPLACE FUNCTION rag_word_count(p_text text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN regexp_count(p_text, '\S+');

-- A LIKE pattern that matches p_text literally.
CREATE OR REPLACE FUNCTION rag_like_literal(p_text text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN replace(replace(replace(p_text, '\', '\\'), '%', '\%'), '_', '\_');

-- Whether a page belongs to a section (NULL: every page): a section starting with http:// or
-- https:// is a URL prefix, one starting with / a prefix of the URL's path, anything else a
-- case-insensitive part of the page's title or first heading (the sections of an
-- llms-full.txt are pages titled by their heading).
CREATE OR REPLACE FUNCTION rag_page_in_section(p_page_id bigint, p_url text, p_title text, p_section text)
RETURNS boolean
LANGUAGE sql STABLE
RETURN CASE
    WHEN p_section IS NULL THEN true
    WHEN p_section ~* '^https?://' THEN p_url ILIKE rag_like_literal(p_section) || '%'
    WHEN p_section LIKE '/%' THEN
        regexp_replace(p_url, '^[a-z][a-z0-9+.-]*://[^/?#]*', '', 'i') ILIKE rag_like_literal(p_section) || '%'
    ELSE p_title ILIKE '%' || rag_like_literal(p_section) || '%'
         OR rag_page_heading(p_page_id) ILIKE '%' || rag_like_literal(p_section) || '%'
END;

-- One window of the active pages of a source in URL order, with the number of pages of the
-- section; empty when the source does not exist (the Store raises NotFound). Counts are taken
-- from the pages of the window only, so a listing never reads a whole source's markdown.
CREATE OR REPLACE FUNCTION rag_list_pages(p_source_id text, p_section text, p_limit integer, p_offset integer)
RETURNS TABLE (items jsonb, total bigint)
LANGUAGE sql STABLE AS $$
    WITH matching AS (
        SELECT p.page_id, p.url, p.title
        FROM rag_sources s JOIN rag_pages p ON p.run_id = s.active_run_id
        WHERE s.source_id = p_source_id AND rag_page_in_section(p.page_id, p.url, p.title, p_section)
    ), shown AS (
        SELECT m.page_id, m.url, m.title FROM matching m
        ORDER BY m.url, m.page_id
        LIMIT greatest(p_limit, 0) OFFSET greatest(p_offset, 0)
    )
    SELECT coalesce((SELECT jsonb_agg(jsonb_build_object(
                         'page_id', w.page_id,
                         'url', w.url,
                         'title', w.title,
                         'section_title', coalesce(rag_page_heading(w.page_id), w.title),
                         'word_count', rag_word_count(p.markdown),
                         'char_count', length(p.markdown),
                         'chunk_count', (SELECT count(*) FROM rag_chunks c WHERE c.page_id = w.page_id))
                         ORDER BY w.url, w.page_id)
                     FROM shown w JOIN rag_pages p ON p.page_id = w.page_id), '[]'::jsonb),
           (SELECT count(*) FROM matching)
    FROM rag_sources s WHERE s.source_id = p_source_id
$$;

-- One window of the code examples of a source's active generation, in their pages' URL order and
-- then as they stand on the page, with how many the generation has; empty when the source does
-- not exist (the Store raises NotFound). Only the window's examples have their code read.
CREATE OR REPLACE FUNCTION rag_list_code_examples(p_source_id text, p_limit integer, p_offset integer)
RETURNS TABLE (items jsonb, total bigint)
LANGUAGE sql STABLE AS $$
    WITH matching AS (
        SELECT e.code_example_id, e.example_index, p.page_id, p.url, p.title
        FROM rag_sources s
        JOIN rag_code_examples e ON e.run_id = s.active_run_id
        JOIN rag_pages p ON p.page_id = e.page_id
        WHERE s.source_id = p_source_id
    ), shown AS (
        SELECT * FROM matching m
        ORDER BY m.url, m.page_id, m.example_index, m.code_example_id
        LIMIT greatest(p_limit, 0) OFFSET greatest(p_offset, 0)
    )
    SELECT coalesce((SELECT jsonb_agg(jsonb_build_object(
                         'code_example_id', w.code_example_id,
                         'page_id', w.page_id,
                         'url', w.url,
                         'title', w.title,
                         'language', e.language,
                         'code', e.code,
                         'context', e.context,
                         'heading_path', to_jsonb(e.heading_path))
                         ORDER BY w.url, w.page_id, w.example_index, w.code_example_id)
                     FROM shown w JOIN rag_code_examples e ON e.code_example_id = w.code_example_id), '[]'::jsonb),
           (SELECT count(*) FROM matching)
    FROM rag_sources s WHERE s.source_id = p_source_id
$$;

-- A URL without its #fragment and trailing slashes, and its fragment (NULL without one): how a
-- page asked for by URL is found when no stored URL is exactly the one asked for.
CREATE OR REPLACE FUNCTION rag_url_key(p_url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN rtrim(split_part(p_url, '#', 1), '/');

CREATE OR REPLACE FUNCTION rag_url_fragment(p_url text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN strpos(p_url, '#') > 0 THEN substr(p_url, strpos(p_url, '#') + 1) END;

-- One active page, by id or else by URL, with p_max_chars characters of its markdown from
-- p_offset (0-based) and the size of the whole page; empty when no active page matches. By URL:
-- the exact URL first, then one that differs by trailing slashes or by a fragment only one of
-- the two has (an anchor into a page finds the page; the numbered sections of an llms-full.txt,
-- stored as distinct fragments, never stand in for each other), the page without a fragment first.
CREATE OR REPLACE FUNCTION rag_read_page(p_page_id bigint, p_url text, p_offset integer, p_max_chars integer)
RETURNS TABLE (page_id bigint, source_id text, url text, title text, metadata jsonb, content text,
               char_count integer, word_count integer)
LANGUAGE sql STABLE AS $$
    SELECT p.page_id, p.source_id, p.url, p.title, p.metadata,
           substr(p.markdown, greatest(p_offset, 0) + 1, greatest(p_max_chars, 0)),
           length(p.markdown), rag_word_count(p.markdown)
    FROM rag_pages p JOIN rag_sources s ON s.source_id = p.source_id AND s.active_run_id = p.run_id
    WHERE CASE WHEN p_page_id IS NOT NULL THEN p.page_id = p_page_id
               ELSE rag_url_key(p.url) = rag_url_key(p_url)
                    AND coalesce(rag_url_fragment(p.url) = rag_url_fragment(p_url), true) END
    ORDER BY p.url = p_url DESC, rag_url_fragment(p.url) IS NULL DESC, p.page_id
    LIMIT 1
$$;

-- Chunks (of any generation) that have no vector of this model yet, for the re-embed job.
CREATE OR REPLACE FUNCTION rag_chunks_missing_embeddings(p_model text, p_limit integer)
RETURNS TABLE (chunk_id bigint, content text)
LANGUAGE sql STABLE AS $$
    SELECT c.chunk_id, c.content FROM rag_chunks c
    WHERE NOT EXISTS (SELECT 1 FROM rag_chunk_embeddings e WHERE e.chunk_id = c.chunk_id AND e.model = p_model)
    ORDER BY c.chunk_id
    LIMIT greatest(p_limit, 0)
$$;

-- Upserts vectors of one model: p_embeddings[i] is the vector of chunk p_chunk_ids[i] (a JSON
-- array of ids, as rag_write_document's chunks); chunks deleted meanwhile are skipped.
CREATE OR REPLACE FUNCTION rag_set_embeddings(p_model text, p_chunk_ids jsonb, p_embeddings vector[])
RETURNS TABLE (written integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_written integer;
BEGIN
    IF jsonb_typeof(p_chunk_ids) IS DISTINCT FROM 'array'
       OR jsonb_array_length(p_chunk_ids) <> coalesce(cardinality(p_embeddings), 0) THEN
        RAISE EXCEPTION 'one embedding per chunk id is needed' USING ERRCODE = '22023';
    END IF;
    PERFORM rag_check_vectors(p_model, p_embeddings);
    INSERT INTO rag_chunk_embeddings AS e (chunk_id, model, run_id, embedding)
    SELECT c.chunk_id, p_model, c.run_id, p_embeddings[ids.ord]
    FROM jsonb_array_elements_text(p_chunk_ids) WITH ORDINALITY AS ids(chunk_id, ord)
    JOIN rag_chunks c ON c.chunk_id = ids.chunk_id::bigint
    WHERE p_embeddings[ids.ord] IS NOT NULL
    ON CONFLICT (chunk_id, model) DO UPDATE SET embedding = EXCLUDED.embedding;
    GET DIAGNOSTICS v_written = ROW_COUNT;
    RETURN QUERY SELECT v_written;
END $$;

CREATE OR REPLACE FUNCTION rag_embedding_counts()
RETURNS TABLE (model text, vectors bigint)
LANGUAGE sql STABLE AS $$
    SELECT e.model, count(*) FROM rag_chunk_embeddings e GROUP BY e.model ORDER BY e.model
$$;

-- Schema state for /health and the start-up check (Supabase reaches it over RPC; migrations
-- are applied by `ragserver migrate` with DATABASE_URL, never over RPC): the recorded
-- migrations and repeatable function files with their checksums, so the server can tell a
-- database it cannot run on from one that only needs `ragserver migrate`.
CREATE OR REPLACE FUNCTION rag_schema_info()
RETURNS TABLE (version text, migrations integer, applied jsonb, functions jsonb, embedding_spaces jsonb)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT max(m.name) FROM rag_schema_migrations m),
           (SELECT count(*)::integer FROM rag_schema_migrations),
           (SELECT coalesce(jsonb_object_agg(m.name, m.checksum), '{}'::jsonb) FROM rag_schema_migrations m),
           (SELECT coalesce(jsonb_object_agg(f.name, f.checksum), '{}'::jsonb) FROM rag_schema_functions f),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('model', sp.model, 'dimension', sp.dimension)
                                      ORDER BY sp.model), '[]'::jsonb)
            FROM rag_embedding_spaces sp)
$$;
