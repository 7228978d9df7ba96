-- Long operations (uploads, ingests, crawls, refreshes, re-embeds) as every replica sees them.
--
-- The replica running an operation (owner, with the advisory lock key its process holds while it
-- lives, NULL over Supabase RPC) writes its state through; any replica answers for it and asks it
-- to stop (cancel_requested). A queued job (owner NULL, status 'starting') is claimed by exactly
-- one replica; `request` is what it runs with (cleared once the operation ends).
-- At most one active operation holds a job_key (a crawl's source), across all replicas.

CREATE TABLE IF NOT EXISTS rag_operations (
    operation_id     text PRIMARY KEY,
    kind             text NOT NULL,
    -- what it works on, for people: a crawl's start URL, an uploaded file's name, a refreshed source's title
    name             text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT 'starting'
                     CHECK (status IN ('starting', 'running', 'cancelling', 'completed', 'failed', 'cancelled')),
    progress         real NOT NULL DEFAULT 0,
    step             text NOT NULL DEFAULT 'starting',
    message          text NOT NULL DEFAULT '',
    counts           jsonb NOT NULL DEFAULT '{}',
    result           jsonb NOT NULL DEFAULT '{}',
    error            text,
    job_key          text,
    request          jsonb,
    owner            text,
    owner_lock       bigint,
    -- the owner's change counter: an older state written late never replaces a newer one
    version          bigint NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    started_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS rag_operations_active_key_idx ON rag_operations (job_key)
    WHERE job_key IS NOT NULL AND status IN ('starting', 'running', 'cancelling');
CREATE INDEX IF NOT EXISTS rag_operations_active_idx ON rag_operations (owner)
    WHERE status IN ('starting', 'running', 'cancelling');
CREATE INDEX IF NOT EXISTS rag_operations_started_idx ON rag_operations (started_at DESC);

ALTER TABLE rag_operations ENABLE ROW LEVEL SECURITY;
