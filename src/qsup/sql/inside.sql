-- Inside a running task (SPEC §18): its progress, and operators' probes (qsup.probes).

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

-- name: stranded_work
-- Work that no live server will run (SPEC §18), in one statement: ('stranded', queue, tasks)
-- for tasks due for more than %(after)s seconds in a queue no live server serves, and
-- ('stalled', server name, NULL, server id) for each live server with idle workers that serves a queue (not
-- paused, without limits) holding such a task. Live: running, heartbeat fresher than
-- %(server_timeout)s. Each row also says the smallest live server id (the one that logs).
-- Cheap: the stranded scan is skipped outright (a one-time filter) while a live server serves
-- every queue, and reads at most %(scan_limit)s waiting tasks otherwise; the stalled check
-- runs only for servers with idle workers and stops at the first task it finds.
WITH live AS MATERIALIZED (
    SELECT id, server_name, queues, idle_workers FROM queued_task_workers
    WHERE is_running AND max_workers > 0
      AND last_heartbeat > now() - make_interval(secs => %(server_timeout)s)
), served AS MATERIALIZED (
    SELECT coalesce(bool_or(cardinality(queues) = 0), false) AS every_queue,
           coalesce(array_agg(DISTINCT q) FILTER (WHERE q IS NOT NULL), '{}') AS queues
    FROM live LEFT JOIN LATERAL unnest(live.queues) AS q ON true
), held AS MATERIALIZED (
    SELECT coalesce(array_agg(queue::text), '{}') AS queues FROM queued_task_queues
    WHERE paused OR coalesce(concurrency, file_concurrency, rate, file_rate, key_concurrency,
                             file_key_concurrency) IS NOT NULL
)
SELECT 'stranded' AS kind, late.queue::text AS name, count(*) AS tasks, NULL::int AS server_id,
       (SELECT min(id) FROM live) AS reporter
FROM (
    SELECT queue FROM queued_tasks
    WHERE NOT (SELECT every_queue FROM served)
      AND claimable = 1 AND scheduled_at <= now() - make_interval(secs => %(after)s)
      AND queue <> ALL ((SELECT queues FROM served)::varchar[])
    LIMIT %(scan_limit)s
) AS late
GROUP BY late.queue
UNION ALL
SELECT 'stalled', live.server_name, NULL, live.id, (SELECT min(id) FROM live)
FROM live
WHERE live.idle_workers > 0 AND EXISTS (
    SELECT 1 FROM queued_tasks t
    WHERE t.claimable = 1 AND t.scheduled_at <= now() - make_interval(secs => %(after)s)
      AND (cardinality(live.queues) = 0 OR t.queue = ANY (live.queues))
      AND t.queue <> ALL ((SELECT queues FROM held)::varchar[]))
ORDER BY 1 DESC, 3 DESC NULLS LAST, 2
