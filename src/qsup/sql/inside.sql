-- Inside a running task (SPEC §18): its progress, and operators' probes (qsup.probes).

-- name: save_progress
-- The latest progress of running (or just ended) tasks, by primary-key probe (see
-- save_contexts).
UPDATE queued_tasks t SET progress = v.progress
FROM (
    SELECT v.progress, task.ctid AS tid
    FROM unnest(%(ids)s::uuid[], %(progress)s::jsonb[]) AS v (id, progress),
    LATERAL (SELECT ctid FROM queued_tasks q WHERE q.id = v.id OFFSET 0) AS task
) AS v
WHERE t.ctid = v.tid

-- name: answer_probes
-- What the workers said about the tasks operators asked about (a NULL stack: not running).
UPDATE queued_task_probes p
SET answered_at = now(), stack = v.stack, cpu_seconds = v.cpu, rss_bytes = v.rss,
    running_seconds = v.running
FROM unnest(%(ids)s::uuid[], %(stacks)s::text[], %(cpu)s::float8[], %(rss)s::int8[],
            %(running)s::float8[]) AS v (id, stack, cpu, rss, running)
WHERE p.task_id = v.id

-- name: request_probe
-- Ask the server of a running task what it does (its heartbeat finds the request); the last
-- answer stays until the new one replaces it. Requests older than an hour go.
WITH old AS (
    DELETE FROM queued_task_probes
    WHERE requested_at < now() - interval '1 hour' AND task_id <> %(id)s
)
INSERT INTO queued_task_probes (task_id) VALUES (%(id)s)
ON CONFLICT (task_id) DO UPDATE SET requested_at = now()
RETURNING requested_at

-- name: read_probe
-- A task's state and the last answer about it (NULLs when none).
SELECT t.state, t.server_id, p.requested_at, p.answered_at, p.stack, p.cpu_seconds,
       p.rss_bytes, p.running_seconds
FROM queued_tasks t LEFT JOIN queued_task_probes p ON p.task_id = t.id
WHERE t.id = %(id)s
