-- qsup schema: task headers (SPEC §12), a small JSON object that travels from the enqueue to
-- the worker (a request id, the W3C trace context). NULL when a task has none: no default, so
-- adding the column rewrites nothing and plain tasks store nothing.
ALTER TABLE queued_tasks ADD COLUMN IF NOT EXISTS headers jsonb;
