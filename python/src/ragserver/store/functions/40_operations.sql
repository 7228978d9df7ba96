-- Operations shared by the replicas (table rag_operations, migration 0008): the owner writes each
-- state through, any replica reads it and asks for a stop, queued jobs are claimed by one replica,
-- and the operations of a replica that is gone end failed. An operation is passed in and out as
-- the JSON the API shows (progressId, type, name, status, progress, step, message, counts, result,
-- error, startedAt, updatedAt: Unix times).
--
-- Error codes the Store translates: no_data_found (P0002) -> NotFound.

CREATE OR REPLACE FUNCTION rag_operation_json(p_op rag_operations) RETURNS jsonb
LANGUAGE sql STABLE
RETURN jsonb_build_object(
    'progressId', p_op.operation_id, 'type', p_op.kind, 'name', p_op.name, 'status', p_op.status,
    'progress', p_op.progress,
    'step', p_op.step, 'message', p_op.message, 'counts', p_op.counts, 'result', p_op.result, 'error', p_op.error,
    'startedAt', extract(epoch FROM p_op.started_at)::float8, 'updatedAt', extract(epoch FROM p_op.updated_at)::float8);

-- An operation whose owner is gone ends failed: its owner's advisory lock is free (direct
-- connections) and it missed heartbeats for p_grace_seconds (a live owner whose session dropped
-- takes its lock again within a beat or two), or, for owners without a lock (Supabase RPC), it
-- missed heartbeats for p_stale_seconds.
CREATE OR REPLACE FUNCTION rag_operation_orphaned(p_op rag_operations, p_stale_seconds integer, p_grace_seconds integer)
RETURNS boolean
LANGUAGE sql VOLATILE
RETURN p_op.status IN ('starting', 'running', 'cancelling') AND p_op.owner IS NOT NULL
    AND ((p_op.owner_lock IS NOT NULL AND p_op.heartbeat_at < now() - make_interval(secs => p_grace_seconds)
          AND pg_try_advisory_xact_lock(p_op.owner_lock))
         OR (p_op.owner_lock IS NULL AND p_op.heartbeat_at < now() - make_interval(secs => p_stale_seconds)));

CREATE OR REPLACE FUNCTION rag_end_orphaned_operation(p_operation_id text) RETURNS void
LANGUAGE sql
BEGIN ATOMIC
    UPDATE rag_operations o
    SET status = 'failed', error = 'interrupted: the replica running it stopped',
        message = 'interrupted: the replica running it stopped', updated_at = now(), finished_at = now(),
        request = NULL
    WHERE o.operation_id = p_operation_id;
END;

-- The owner's write of an operation's state (inserted on its first write). A state older than the
-- stored one, or any state of an operation that already ended, changes nothing. Answers whether
-- someone asked to stop it (no row: the write changed nothing).
CREATE OR REPLACE FUNCTION rag_save_operation(p_op jsonb, p_version bigint, p_owner text, p_owner_lock bigint)
RETURNS TABLE (cancel_requested boolean)
LANGUAGE sql
BEGIN ATOMIC
    INSERT INTO rag_operations AS o (operation_id, kind, name, status, progress, step, message, counts, result,
                                     error, owner, owner_lock, version, started_at, updated_at, finished_at)
    VALUES (p_op ->> 'progressId', p_op ->> 'type', coalesce(p_op ->> 'name', ''), p_op ->> 'status',
            (p_op ->> 'progress')::real,
            p_op ->> 'step', p_op ->> 'message', coalesce(p_op -> 'counts', '{}'), coalesce(p_op -> 'result', '{}'),
            p_op ->> 'error', p_owner, p_owner_lock, p_version, to_timestamp((p_op ->> 'startedAt')::float8),
            to_timestamp((p_op ->> 'updatedAt')::float8),
            CASE WHEN p_op ->> 'status' IN ('completed', 'failed', 'cancelled') THEN now() END)
    ON CONFLICT (operation_id) DO UPDATE
    SET status = CASE WHEN o.cancel_requested AND excluded.status = 'running' THEN 'cancelling' ELSE excluded.status END,
        progress = excluded.progress, step = excluded.step, message = excluded.message,
        counts = excluded.counts, result = excluded.result, error = excluded.error, version = excluded.version,
        updated_at = excluded.updated_at, heartbeat_at = now(), finished_at = excluded.finished_at,
        request = CASE WHEN excluded.finished_at IS NULL THEN o.request END
    WHERE o.version < excluded.version AND o.owner = excluded.owner
      AND o.status IN ('starting', 'running', 'cancelling')
    RETURNING o.cancel_requested;
END;

-- Queues a job with what it runs with (p_request), or refuses it when an active operation holds
-- its key: `queued` false and that operation's id.
CREATE OR REPLACE FUNCTION rag_enqueue_operation(p_op jsonb, p_job_key text, p_request jsonb)
RETURNS TABLE (operation_id text, queued boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_id text;
BEGIN
    INSERT INTO rag_operations AS o (operation_id, kind, name, step, message, job_key, request)
    VALUES (p_op ->> 'progressId', p_op ->> 'type', coalesce(p_op ->> 'name', ''), 'queued',
            coalesce(p_op ->> 'message', ''), p_job_key, p_request)
    ON CONFLICT (job_key) WHERE job_key IS NOT NULL AND status IN ('starting', 'running', 'cancelling') DO NOTHING
    RETURNING o.operation_id INTO v_id;
    IF v_id IS NOT NULL THEN
        RETURN QUERY SELECT v_id, true;
        RETURN;
    END IF;
    RETURN QUERY SELECT o.operation_id, false FROM rag_operations o
    WHERE o.job_key = p_job_key AND o.status IN ('starting', 'running', 'cancelling');
END $$;

-- Claims one queued job for a replica: the one named (p_operation_id) or else the oldest of the
-- given kinds. Concurrent claims skip each other's rows, so exactly one wins each job.
CREATE OR REPLACE FUNCTION rag_claim_operation(p_kinds jsonb, p_operation_id text, p_owner text, p_owner_lock bigint)
RETURNS TABLE (operation_id text, kind text, request jsonb, operation jsonb)
LANGUAGE sql
BEGIN ATOMIC
    WITH next AS (
        SELECT q.operation_id FROM rag_operations q
        WHERE q.owner IS NULL AND q.status = 'starting' AND q.kind = ANY (rag_text_array(p_kinds))
          AND (p_operation_id IS NULL OR q.operation_id = p_operation_id)
        ORDER BY q.started_at, q.operation_id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    UPDATE rag_operations o SET owner = p_owner, owner_lock = p_owner_lock, heartbeat_at = now()
    FROM next WHERE o.operation_id = next.operation_id AND o.owner IS NULL
    RETURNING o.operation_id, o.kind, o.request, rag_operation_json(o);
END;

-- The owner's heartbeat for its active operations; answers those someone asked to stop.
CREATE OR REPLACE FUNCTION rag_operation_heartbeat(p_owner text)
RETURNS TABLE (operation_id text)
LANGUAGE sql
BEGIN ATOMIC
    WITH beat AS (
        UPDATE rag_operations o SET heartbeat_at = now()
        WHERE o.owner = p_owner AND o.status IN ('starting', 'running', 'cancelling')
        RETURNING o.operation_id, o.cancel_requested
    )
    SELECT beat.operation_id FROM beat WHERE beat.cancel_requested;
END;

-- One operation as any replica shows it; one whose owner is gone is ended failed first.
CREATE OR REPLACE FUNCTION rag_get_operation(p_operation_id text, p_stale_seconds integer, p_grace_seconds integer)
RETURNS TABLE (operation jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_op rag_operations;
BEGIN
    SELECT * INTO v_op FROM rag_operations o WHERE o.operation_id = p_operation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no operation with id %', p_operation_id USING ERRCODE = 'P0002';
    END IF;
    IF rag_operation_orphaned(v_op, p_stale_seconds, p_grace_seconds) THEN
        PERFORM rag_end_orphaned_operation(p_operation_id);
        SELECT * INTO v_op FROM rag_operations o WHERE o.operation_id = p_operation_id;
    END IF;
    RETURN QUERY SELECT rag_operation_json(v_op);
END $$;

-- Operations of every replica, newest first (p_active_only: those not ended).
CREATE OR REPLACE FUNCTION rag_list_operations(p_active_only boolean, p_limit integer)
RETURNS TABLE (operation jsonb)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT rag_operation_json(o) FROM rag_operations o
    WHERE NOT p_active_only OR o.status IN ('starting', 'running', 'cancelling')
    ORDER BY o.started_at DESC, o.operation_id
    LIMIT p_limit;
END;

-- Asks an operation to stop: a queued one ends cancelled at once, a running one is marked for its
-- owner to notice; `stopping` false when it had already ended. NotFound for an unknown id.
CREATE OR REPLACE FUNCTION rag_request_cancel(p_operation_id text)
RETURNS TABLE (stopping boolean, owner text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_op rag_operations;
BEGIN
    SELECT * INTO v_op FROM rag_operations o WHERE o.operation_id = p_operation_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no operation with id %', p_operation_id USING ERRCODE = 'P0002';
    END IF;
    IF v_op.status NOT IN ('starting', 'running', 'cancelling') THEN
        RETURN QUERY SELECT false, v_op.owner;
        RETURN;
    END IF;
    IF v_op.owner IS NULL THEN
        UPDATE rag_operations o SET status = 'cancelled', message = 'cancelled before it started',
            updated_at = now(), finished_at = now(), request = NULL
        WHERE o.operation_id = p_operation_id;
    ELSE
        UPDATE rag_operations o SET cancel_requested = true, status = 'cancelling', updated_at = now()
        WHERE o.operation_id = p_operation_id;
    END IF;
    RETURN QUERY SELECT true, v_op.owner;
END $$;

-- Ends the operations of replicas that are gone (see rag_operation_orphaned) and forgets those
-- that ended more than p_keep_seconds ago; answers the ids it ended.
CREATE OR REPLACE FUNCTION rag_recover_interrupted_operations(
    p_stale_seconds integer, p_keep_seconds integer, p_grace_seconds integer)
RETURNS TABLE (operation_id text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_op rag_operations;
BEGIN
    DELETE FROM rag_operations o WHERE o.finished_at < now() - make_interval(secs => p_keep_seconds);
    FOR v_op IN
        SELECT * FROM rag_operations o
        WHERE o.status IN ('starting', 'running', 'cancelling') AND o.owner IS NOT NULL
        ORDER BY o.started_at FOR UPDATE SKIP LOCKED
    LOOP
        IF rag_operation_orphaned(v_op, p_stale_seconds, p_grace_seconds) THEN
            PERFORM rag_end_orphaned_operation(v_op.operation_id);
            operation_id := v_op.operation_id;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;
