-- Runs a first crawl makes visible as it goes, and what a refresh compares each page with.
--
-- rag_runs.progressive: the run became the source's active generation when it began (the source
-- had no content), so each page it writes is searchable at once; when such a run stops before
-- its commit it keeps what it wrote, as status 'partial'.
-- rag_pages: the HTTP validators the page was fetched with (ETag, Last-Modified), a hash of its
-- title and markdown, and the links it had, so a refresh can ask "changed since?", carry an
-- unchanged page into the new run, and still follow the links of a page that answered 304.

ALTER TABLE rag_runs ADD COLUMN IF NOT EXISTS progressive boolean NOT NULL DEFAULT false;
ALTER TABLE rag_runs DROP CONSTRAINT IF EXISTS rag_runs_status_check;
ALTER TABLE rag_runs ADD CONSTRAINT rag_runs_status_check
    CHECK (status IN ('running', 'completed', 'partial', 'failed', 'cancelled'));

ALTER TABLE rag_pages ADD COLUMN IF NOT EXISTS etag text;
ALTER TABLE rag_pages ADD COLUMN IF NOT EXISTS last_modified text;
ALTER TABLE rag_pages ADD COLUMN IF NOT EXISTS content_hash text;
ALTER TABLE rag_pages ADD COLUMN IF NOT EXISTS links text[] NOT NULL DEFAULT '{}';
-- a refresh looks up the previous generation's page of a URL
CREATE INDEX IF NOT EXISTS rag_pages_run_url_idx ON rag_pages (run_id, url);
