-- Hybrid search: vector top-k and full-text top-k as CTEs of one statement, fused by
-- reciprocal rank fusion, over the active generation of each source only.

-- The query's distinct English lexemes (stopwords and punctuation dropped), at most 32.
CREATE OR REPLACE FUNCTION rag_query_lexemes(p_query text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (tsvector_to_array(to_tsvector('english'::regconfig, coalesce(p_query, ''))))[1:32];

-- OR of lexemes: long natural-language questions still match documents that share some words
-- (an AND of every word matches almost nothing). NULL when there are no lexemes.
CREATE OR REPLACE FUNCTION rag_or_tsquery(p_lexemes text[]) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT string_agg('''' || replace(replace(l, '\', '\\'), '''', '''''') || '''', ' | ')::tsquery
        FROM unnest(p_lexemes) AS l);

-- Per query lexeme: estimated matching rows and a BM25-style IDF, from the planner statistics
-- (pg_stats.most_common_elems of the table's tsv column). Lexemes not listed there are rarer than
-- every listed one: est_rows NULL, IDF of half the least listed frequency. Without statistics
-- (never analysed) every lexeme weighs 1.
CREATE OR REPLACE FUNCTION rag_lexeme_stats(p_table text, p_lexemes text[])
RETURNS TABLE (lexeme text, est_rows real, idf double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_elems text[];
    v_freqs real[];
    v_rows real;
BEGIN
    SELECT st.most_common_elems::text::text[], st.most_common_elem_freqs INTO v_elems, v_freqs
    FROM pg_stats st
    WHERE st.schemaname = current_schema() AND st.tablename = p_table AND st.attname = 'tsv';
    SELECT greatest(c.reltuples, 0) INTO v_rows FROM pg_class c WHERE c.oid = to_regclass(p_table);
    IF v_elems IS NULL OR coalesce(v_rows, 0) = 0 THEN
        RETURN QUERY SELECT l, NULL::real, 1.0::double precision FROM unnest(p_lexemes) AS l;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT x.l, x.f * v_rows, ln(1 + (v_rows - x.n + 0.5) / (x.n + 0.5))::double precision
    FROM (SELECT l, v_freqs[array_position(v_elems, l)] AS f,
                 coalesce(v_freqs[array_position(v_elems, l)], v_freqs[cardinality(v_elems) + 1] / 2) * v_rows AS n
          FROM unnest(p_lexemes) AS l) x;
END $$;

-- SQL of the vector candidates of one model: the model and dimension are literals so that the
-- planner uses the model's partial HNSW index. Parameters: $1 query vector, $3 active run ids,
-- $4 candidate count. Yields (id, rank, similarity): the chunk, its rank (1 = nearest) and its
-- cosine similarity to the query (1 - cosine distance).
CREATE OR REPLACE FUNCTION rag_vector_candidates_sql(p_model text, p_dimension integer) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN format($f$
    SELECT r.chunk_id AS id, row_number() OVER (ORDER BY r.distance, r.chunk_id) AS rank,
           1 - r.distance AS similarity
    FROM (SELECT e.chunk_id, e.embedding::vector(%1$s) <=> $1::vector(%1$s) AS distance
          FROM rag_chunk_embeddings e
          WHERE e.model = %2$L AND e.run_id = ANY($3)
          ORDER BY distance
          LIMIT $4) r
$f$, p_dimension, p_model);

-- SQL of one search's fused candidates, for both searches: `vec` is the given vector
-- candidates' SQL (id, rank, similarity), `txt` the full-text top-k of p_table (its id column
-- p_id, rank expression p_rank_sql over m.tsv), fused by reciprocal rank fusion with k = $2.
-- Parameters: as rag_vector_candidates_sql, plus $2 rrf_k, $5 scan tsquery, $6 match count and
-- $7 scan limit. Yields (id, vector_rank, text_rank, fused_score, similarity), best first.
CREATE OR REPLACE FUNCTION rag_fused_sql(p_vector_sql text, p_table text, p_id text, p_rank_sql text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN format($f$
    WITH vec AS (%1$s),
    txt AS (
        SELECT t.id, row_number() OVER (ORDER BY t.rank DESC, t.id) AS rank
        FROM (SELECT m.id, %4$s AS rank
              FROM (SELECT x.%3$I AS id, x.tsv FROM %2$I x
                    -- run_id + 0: never the run index (it would filter every row by @@); the GIN index
                    WHERE $5 IS NOT NULL AND x.tsv @@ $5 AND x.run_id + 0 = ANY($3)
                    LIMIT $7) m
              ORDER BY rank DESC, m.id
              LIMIT $4) t
    )
    SELECT coalesce(vec.id, txt.id) AS id, vec.rank AS vector_rank, txt.rank AS text_rank,
           coalesce(1.0::float8 / ($2 + vec.rank), 0) + coalesce(1.0::float8 / ($2 + txt.rank), 0) AS fused_score,
           vec.similarity
    FROM vec FULL OUTER JOIN txt ON vec.id = txt.id
    ORDER BY fused_score DESC, id
    LIMIT $6
$f$, p_vector_sql, p_table, p_id, p_rank_sql);

-- Everything both searches need before their one statement runs: validated arguments, the
-- active runs, the vector candidates' SQL, the full-text scan query and rank expression, and the
-- HNSW settings of this transaction.
--
-- Full text: the scan query is an OR of the query's rare lexemes plus its common ones, rarest
-- first, while the estimated matching rows stay under scan_limit (at least one lexeme), so a
-- query with very common words still ranks a small, relevant candidate set. The rank is
-- sum(idf * ts_rank(tsv, lexeme, 1)) over every lexeme: ts_rank alone knows no IDF (what the
-- weighting does to full-text quality: BENCHMARKS.md, "Retrieval quality").
CREATE TYPE rag_search_plan AS (
    runs bigint[], vector_sql text, query_vector vector, scan_query tsquery, rank_sql text, scan_limit integer);

CREATE OR REPLACE FUNCTION rag_plan_search(
    p_table text, p_query text, p_embedding vector, p_model text,
    p_match_count integer, p_source_id text, p_rrf_k integer, p_candidates integer,
    p_library text, p_version text)
RETURNS rag_search_plan
LANGUAGE plpgsql AS $$
DECLARE
    v rag_search_plan;
    v_dimension integer;
    v_lex record;
    v_scan text[] := '{}';
    v_scan_rows real := 0;
    v_terms text[] := '{}';
BEGIN
    IF p_match_count IS NULL OR p_match_count < 1 OR p_match_count > 1000 THEN
        RAISE EXCEPTION 'match_count must be 1..1000, got %', p_match_count USING ERRCODE = '22023';
    END IF;
    IF p_candidates IS NULL OR p_candidates < 1 OR p_candidates > 1000 THEN
        RAISE EXCEPTION 'candidates must be 1..1000, got %', p_candidates USING ERRCODE = '22023';
    END IF;
    IF p_rrf_k IS NULL OR p_rrf_k < 0 THEN
        RAISE EXCEPTION 'rrf_k must be >= 0, got %', p_rrf_k USING ERRCODE = '22023';
    END IF;
    v.runs := ARRAY(SELECT s.active_run_id FROM rag_sources s
                    WHERE s.active_run_id IS NOT NULL AND (p_source_id IS NULL OR s.source_id = p_source_id)
                          AND rag_source_labelled(s.metadata, p_library, p_version));
    IF p_embedding IS NOT NULL AND p_model IS NOT NULL THEN
        SELECT sp.dimension INTO v_dimension FROM rag_embedding_spaces sp WHERE sp.model = p_model;
        v.query_vector := p_embedding;
        IF v_dimension IS NOT NULL AND vector_dims(v.query_vector) <> v_dimension THEN
            RAISE EXCEPTION 'query vector has % dimensions; model % has %',
                vector_dims(v.query_vector), p_model, v_dimension USING ERRCODE = '22000';
        END IF;
        IF v_dimension IS NOT NULL THEN
            v.vector_sql := rag_vector_candidates_sql(p_model, v_dimension);
            -- 4x the candidates: the recall against exact search this buys is in BENCHMARKS.md, "Search latency"
            PERFORM set_config('hnsw.ef_search', least(greatest(p_candidates * 4, 100), 1000)::text, true);
            -- pgvector >= 0.8: keep scanning the graph when filters (generation, source) drop rows
            IF current_setting('hnsw.iterative_scan', true) IS NOT NULL THEN
                PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
            END IF;
        END IF;
    END IF;
    v.vector_sql := coalesce(v.vector_sql,
        'SELECT NULL::bigint AS id, NULL::bigint AS rank, NULL::float8 AS similarity WHERE false');
    v.scan_limit := greatest(p_candidates * 10, 300);
    FOR v_lex IN
        SELECT * FROM rag_lexeme_stats(p_table, rag_query_lexemes(p_query)) AS st
        ORDER BY st.est_rows NULLS FIRST, st.lexeme
    LOOP
        IF v_lex.est_rows IS NULL OR cardinality(v_scan) = 0 OR v_scan_rows + v_lex.est_rows <= v.scan_limit THEN
            v_scan := v_scan || v_lex.lexeme;
            v_scan_rows := v_scan_rows + coalesce(v_lex.est_rows, 0);
        END IF;
        v_terms := v_terms || format('%s * ts_rank(m.tsv, %L::tsquery, 1)',
                                     round(v_lex.idf::numeric, 4), rag_or_tsquery(ARRAY[v_lex.lexeme]));
    END LOOP;
    v.scan_query := rag_or_tsquery(v_scan);
    v.rank_sql := coalesce(nullif(array_to_string(v_terms, ' + '), ''), '0');
    RETURN v;
END $$;

-- p_embedding NULL (no embedder): full text only. rrf_k and candidates: RRF_K and SEARCH_CANDIDATES.
-- p_source_id, p_library and p_version (NULL: any) narrow the sources searched.
CREATE OR REPLACE FUNCTION rag_hybrid_search(
    p_query text, p_embedding vector, p_model text, p_match_count integer, p_source_id text,
    p_rrf_k integer, p_candidates integer, p_library text, p_version text)
RETURNS TABLE (chunk_id bigint, source_id text, page_id bigint, url text, title text, content text,
               heading_path text[], metadata jsonb, fused_score double precision, similarity double precision,
               vector_rank integer, text_rank integer)
LANGUAGE plpgsql AS $$
DECLARE
    v rag_search_plan;
BEGIN
    v := rag_plan_search('rag_chunks', p_query, p_embedding, p_model, p_match_count,
                           p_source_id, p_rrf_k, p_candidates, p_library, p_version);
    RETURN QUERY EXECUTE format($q$
        SELECT f.id, c.source_id, c.page_id, p.url, p.title, c.content, c.heading_path, c.metadata,
               f.fused_score, f.similarity, f.vector_rank::integer, f.text_rank::integer
        FROM (%s) f
        JOIN rag_chunks c ON c.chunk_id = f.id
        JOIN rag_pages p ON p.page_id = c.page_id
        ORDER BY f.fused_score DESC, f.id
    $q$, rag_fused_sql(v.vector_sql, 'rag_chunks', 'chunk_id', v.rank_sql))
    USING v.query_vector, p_rrf_k, v.runs, p_candidates, v.scan_query, p_match_count, v.scan_limit;
END $$;

-- Code examples: full-text over code, context and headings, fused with the vector ranks of the
-- pages they sit on: an example ranks like the best chunk of its page, and carries that chunk's
-- similarity.
CREATE OR REPLACE FUNCTION rag_search_code_examples(
    p_query text, p_embedding vector, p_model text, p_match_count integer, p_source_id text,
    p_rrf_k integer, p_candidates integer, p_library text, p_version text)
RETURNS TABLE (code_example_id bigint, source_id text, page_id bigint, url text, title text, code text,
               language text, context text, heading_path text[], fused_score double precision,
               similarity double precision, vector_rank integer, text_rank integer)
LANGUAGE plpgsql AS $$
DECLARE
    v rag_search_plan;
    v_vector_sql text;
BEGIN
    v := rag_plan_search('rag_code_examples', p_query, p_embedding, p_model, p_match_count,
                           p_source_id, p_rrf_k, p_candidates, p_library, p_version);
    v_vector_sql := format($v$
        SELECT e.code_example_id AS id,
               row_number() OVER (ORDER BY vp.best, e.example_index, e.code_example_id) AS rank, vp.similarity
        FROM (SELECT c.page_id, min(vc.rank) AS best, max(vc.similarity) AS similarity
              FROM (%s) vc JOIN rag_chunks c ON c.chunk_id = vc.id GROUP BY c.page_id) vp
        JOIN rag_code_examples e ON e.page_id = vp.page_id
        ORDER BY rank LIMIT $4
    $v$, v.vector_sql);
    RETURN QUERY EXECUTE format($q$
        SELECT f.id, e.source_id, e.page_id, p.url, p.title, e.code, e.language, e.context,
               e.heading_path, f.fused_score, f.similarity, f.vector_rank::integer, f.text_rank::integer
        FROM (%s) f
        JOIN rag_code_examples e ON e.code_example_id = f.id
        JOIN rag_pages p ON p.page_id = e.page_id
        ORDER BY f.fused_score DESC, f.id
    $q$, rag_fused_sql(v_vector_sql, 'rag_code_examples', 'code_example_id', v.rank_sql))
    USING v.query_vector, p_rrf_k, v.runs, p_candidates, v.scan_query, p_match_count, v.scan_limit;
END $$;
