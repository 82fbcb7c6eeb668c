-- Read queries of the HTTP side (health, metrics, JSON API). Parameters use %(name)s style;
-- a NULL filter means "any".

-- name: http_list_tasks
-- One page of tasks, newest first, filtered; the cursor is the (date_enqueued, id) of the last row seen.
SELECT id, name, state, queue, priority, parent_task, attempts, max_retries, date_enqueued,
       date_started, date_done, scheduled_at, error_message, progress
FROM queued_tasks
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(name)s::text IS NULL OR strpos(name, %(name)s::text) > 0)
  AND (%(parent)s::uuid IS NULL OR parent_task = %(parent)s::uuid)
  AND (%(before_date)s::timestamptz IS NULL
       OR (date_enqueued, id) < (%(before_date)s::timestamptz, %(before_id)s::uuid))
ORDER BY date_enqueued DESC, id DESC
LIMIT %(limit)s

-- name: http_get_task
-- Every column of one task (workflow_id: the dashboard asks for a workflow only for its steps).
SELECT id, name, state, queue, priority, parent_task, args, kwargs, context, result,
       error_message, attempts, max_retries, timeout, unique_key, date_enqueued, date_started,
       date_done, scheduled_at, server_id, worker_pid, cancel_requested, cpu_seconds,
       peak_memory_bytes, memory_growth_bytes, crashes, crash_causes, headers, concurrency_key,
       workflow_id, progress
FROM queued_tasks WHERE id = %(id)s

-- name: http_task_children
-- The tasks whose parent is this task, oldest first (bounded).
SELECT id, name, state FROM queued_tasks WHERE parent_task = %(id)s
ORDER BY date_enqueued, id LIMIT 500

-- name: http_task_dependencies
-- The tasks this task waits for, with their states.
SELECT t.id, t.name, t.state FROM queued_task_dependencies d
JOIN queued_tasks t ON t.id = d.depends_on
WHERE d.task_id = %(id)s ORDER BY t.date_enqueued, t.id

-- name: http_task_dependents
-- The tasks that wait for this task (bounded).
SELECT t.id, t.name, t.state FROM queued_task_dependencies d
JOIN queued_tasks t ON t.id = d.task_id
WHERE d.depends_on = %(id)s ORDER BY t.date_enqueued, t.id LIMIT 500

-- name: http_task_exists
-- Whether a task id exists.
SELECT EXISTS (SELECT 1 FROM queued_tasks WHERE id = %(id)s)

-- name: http_task_logs
-- A task's log rows after a log id, oldest first (bounded).
SELECT id, type, message, date_created FROM queued_task_logs
WHERE queued_task_id = %(id)s AND id > %(after)s
ORDER BY id LIMIT %(limit)s

-- name: http_health
-- Live servers (running, heartbeat fresh), their worker processes, and tasks stuck past their timeout.
SELECT
    (SELECT count(*) FROM queued_task_workers
     WHERE is_running AND max_workers > 0
       AND last_heartbeat > now() - make_interval(secs => %(server_timeout)s)) AS servers,
    (SELECT coalesce(sum(active_workers + idle_workers), 0) FROM queued_task_workers
     WHERE is_running
       AND last_heartbeat > now() - make_interval(secs => %(server_timeout)s)) AS workers,
    (SELECT count(*) FROM queued_tasks
     WHERE state IN ('picked_up', 'running')
       AND coalesce(date_started, scheduled_at)
           < now() - make_interval(secs => coalesce(timeout, %(task_timeout)s))) AS stuck

-- name: http_servers
-- Servers seen in the last day, running ones first, with their heartbeat age in seconds.
SELECT id, server_name, hostname, pid, max_workers, active_workers, idle_workers, is_running,
       last_heartbeat, extract(epoch FROM now() - last_heartbeat)::float8 AS heartbeat_age,
       queues, date_started, date_stopped, counters
FROM queued_task_workers
WHERE is_running OR date_stopped > now() - interval '1 day'
ORDER BY is_running DESC, id DESC

-- name: http_oldest_due
-- Per queue: age in seconds of the oldest due task still enqueued, and tasks enqueued after a failed attempt.
SELECT queue,
       coalesce(extract(epoch FROM now() - min(scheduled_at) FILTER (WHERE scheduled_at <= now())), 0)::float8
           AS oldest,
       count(*) FILTER (WHERE attempts > 0) AS retrying
FROM queued_tasks WHERE state = 'enqueued' GROUP BY queue ORDER BY queue

-- name: http_enqueued_total
-- Tasks ever enqueued (the sequence behind queued_tasks.seq).
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM queued_tasks_enqueued_seq
