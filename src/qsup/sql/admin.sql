-- Operator queries (qsup.admin) and cron schedule bookkeeping (qsup.scheduler).

-- name: admin_lock_task
-- One task's state, row-locked until the transaction ends (cancel decides on it).
SELECT state FROM queued_tasks WHERE id = %(id)s FOR UPDATE

-- name: admin_cancel_unstarted
-- Cancel an enqueued or waiting task and log why.
WITH cancelled AS (
    UPDATE queued_tasks
    SET state = 'cancelled', date_done = now(), error_message = %(reason)s
    WHERE id = %(id)s AND state IN ('enqueued', 'waiting')
    RETURNING id
)
INSERT INTO queued_task_logs (queued_task_id, type, message)
SELECT id, 'cancelled', %(reason)s FROM cancelled
RETURNING queued_task_id

-- name: admin_request_cancel
-- Ask the server holding a picked-up or running task to stop it, and log the request.
WITH requested AS (
    UPDATE queued_tasks SET cancel_requested = true
    WHERE id = %(id)s AND state IN ('picked_up', 'running')
    RETURNING id
)
INSERT INTO queued_task_logs (queued_task_id, type, message)
SELECT id, 'cancel_requested', %(reason)s FROM requested
RETURNING queued_task_id

-- name: admin_retry_tasks
-- Send failed/cancelled tasks back to the queue with fresh attempts; the old error goes to a log
-- row. Selection: the given ids (failed or cancelled), or every failed task when %(all_failed)s;
-- optionally one queue. A task whose unique key is held by an unfinished task is left alone.
WITH picked AS (
    SELECT t.id, t.queue, t.error_message FROM queued_tasks t
    WHERE t.state IN ('failed', 'cancelled')
      AND (t.id = ANY(%(ids)s::uuid[]) OR (%(all_failed)s AND t.state = 'failed'))
      AND (%(queue)s::text IS NULL OR t.queue = %(queue)s::text)
      AND (t.unique_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM queued_tasks o
          WHERE o.unique_key = t.unique_key AND o.id <> t.id
            AND o.state IN ('waiting', 'enqueued', 'picked_up', 'running')))
    FOR UPDATE OF t
), retried AS (
    UPDATE queued_tasks t
    SET state = 'enqueued', attempts = 0, scheduled_at = now(), date_started = NULL,
        date_done = NULL, error_message = NULL, result = NULL, server_id = NULL,
        worker_pid = NULL, cancel_requested = false, crashes = 0, crash_causes = NULL,
        orphaned = 0
    FROM picked WHERE t.id = picked.id
    RETURNING t.id
), logged AS (
    INSERT INTO queued_task_logs (queued_task_id, type, message)
    SELECT id, 'retry', 'retried by operator; previous error: '
                        || coalesce(error_message, '(none)')
    FROM picked
)
SELECT picked.id, picked.queue FROM picked JOIN retried ON retried.id = picked.id

-- name: admin_clear_tasks
-- Delete tasks in the given states (optionally of one queue); logs and dependency rows cascade.
DELETE FROM queued_tasks
WHERE state = ANY(%(states)s::text[])
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)

-- name: schedule_ensure
-- Make sure a schedule has its row (paused state and fire times live there).
INSERT INTO queued_task_schedules (name) SELECT unnest(%(names)s::text[])
ON CONFLICT (name) DO NOTHING

-- name: schedule_rows
-- The stored state of some schedules.
SELECT name, paused, last_fire, next_fire FROM queued_task_schedules
WHERE name = ANY(%(names)s::text[])

-- name: schedule_set_paused
-- Pause or resume a schedule. Resuming sets next_fire to the next tick (%(next_fire)s), so ticks
-- passed while paused never run, and servers sleeping until that tick fire it.
INSERT INTO queued_task_schedules (name, paused, next_fire)
VALUES (%(name)s, %(paused)s, %(next_fire)s)
ON CONFLICT (name) DO UPDATE
SET paused = excluded.paused,
    next_fire = CASE WHEN excluded.paused THEN queued_task_schedules.next_fire
                     ELSE excluded.next_fire END

-- name: schedule_advance
-- Compare-and-set: only the caller that read next_fire = %(expected)s moves it on (and may
-- enqueue the ticks it covered, in the same transaction). Concurrent callers wait on the row
-- lock, then see the new next_fire and update nothing.
UPDATE queued_task_schedules
SET next_fire = %(next_fire)s::timestamptz,
    last_fire = coalesce(%(fired)s::timestamptz, last_fire)
WHERE name = %(name)s AND NOT paused AND next_fire IS NOT DISTINCT FROM %(expected)s::timestamptz
RETURNING name

-- name: schedule_mark_run
-- Record a run-now of a schedule.
INSERT INTO queued_task_schedules (name, last_fire) VALUES (%(name)s, %(fired)s::timestamptz)
ON CONFLICT (name) DO UPDATE SET last_fire = excluded.last_fire

-- name: admin_find_tasks
-- Tasks matching an operator's filter (qsup.task_filter), newest first: ids in [low, high),
-- UUIDv7, so the range is the enqueue time and the page cursor (keyset paging, no OFFSET).
-- %(limit)s NULL: every match (bulk retry and cancel). Plans on 10,000,000 rows (5 s apart):
-- common states read the primary key backwards and stop after a page (0.1 ms); a rare state
-- (10,000 failed) reads the state index and keeps the newest (150 ms); a filter that matches
-- nothing scans the table in parallel (1.6 s; 0.7 s on 5,000,000). See tests/integration/
-- test_task_list.py.
SELECT id, name, state, queue, priority, attempts, max_retries, date_enqueued, scheduled_at,
       date_started, date_done, error_message
FROM queued_tasks
WHERE state = ANY(%(states)s::text[]) AND id >= %(low)s::uuid AND id < %(high)s::uuid
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND (%(pattern)s::text IS NULL OR name LIKE %(pattern)s::text)
ORDER BY id DESC
LIMIT %(limit)s
