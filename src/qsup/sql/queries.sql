-- Core queries: enqueue, claim, completion, rescue. Parameters use psycopg's %(name)s style.

-- name: insert_task
-- Insert one task in one round trip: it waits for its dependencies (locked FOR SHARE so none
-- can finish unseen), is cancelled at once if one already failed, and wakes servers on commit.
-- A clash on the unique key returns no row: the caller then looks up the existing task.
WITH deps AS (  -- one primary-key probe per dependency (a locking subquery is not flattened)
    SELECT p.id, p.state FROM unnest(%(depends_on)s::uuid[]) AS d (id),
    LATERAL (SELECT id, state FROM queued_tasks q WHERE q.id = d.id FOR SHARE) AS p
), decided AS (
    SELECT CASE
        WHEN (SELECT count(*) FROM deps) < cardinality(%(depends_on)s::uuid[]) THEN NULL
        WHEN EXISTS (SELECT 1 FROM deps WHERE state IN ('failed', 'cancelled')) THEN 'cancelled'
        WHEN EXISTS (SELECT 1 FROM deps WHERE state <> 'completed') THEN 'waiting'
        ELSE 'enqueued' END AS state
), ins AS (
    INSERT INTO queued_tasks (id, name, state, parent_task, queue, priority, args, kwargs,
                              scheduled_at, max_retries, timeout, unique_key, context,
                              headers, date_done, error_message, concurrency_key)
    SELECT %(id)s, %(name)s, decided.state, %(parent)s, %(queue)s, %(priority)s, %(args)s::jsonb,
           %(kwargs)s::jsonb,
           coalesce(%(eta)s::timestamptz, now()) + make_interval(secs => %(delay)s),
           %(max_retries)s, %(timeout)s, %(unique_key)s, %(context)s::jsonb, %(headers)s::jsonb,
           CASE WHEN decided.state = 'cancelled' THEN now() END,
           CASE WHEN decided.state = 'cancelled'
                THEN 'cancelled: a dependency failed or was cancelled' END,
           %(concurrency_key)s
    FROM decided
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND state IN ('waiting', 'enqueued', 'picked_up', 'running')
        DO NOTHING
    RETURNING id, state, queue
), dep_rows AS (
    INSERT INTO queued_task_dependencies (task_id, depends_on)
    SELECT ins.id, d FROM ins, unnest(%(depends_on)s::uuid[]) AS d
)
SELECT id, state, CASE WHEN state = 'enqueued' AND %(channel)s::text IS NOT NULL
                       THEN pg_notify(%(channel)s, queue) END IS NULL AS notified
FROM ins

-- name: insert_plain_task
-- insert_task for a task without dependencies (the common case): half the work.
WITH ins AS (
    INSERT INTO queued_tasks (id, name, state, queue, priority, args, kwargs, scheduled_at,
                              max_retries, timeout, unique_key, context, headers,
                              concurrency_key)
    VALUES (%(id)s, %(name)s, 'enqueued', %(queue)s, %(priority)s, %(args)s::jsonb,
            %(kwargs)s::jsonb,
            coalesce(%(eta)s::timestamptz, now()) + make_interval(secs => %(delay)s),
            %(max_retries)s, %(timeout)s, %(unique_key)s, %(context)s::jsonb, %(headers)s::jsonb,
            %(concurrency_key)s)
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND state IN ('waiting', 'enqueued', 'picked_up', 'running')
        DO NOTHING
    RETURNING id, state, queue
)
SELECT id, state, CASE WHEN %(channel)s::text IS NOT NULL
                       THEN pg_notify(%(channel)s, queue) END IS NULL AS notified
FROM ins

-- name: copy_tasks
-- COPY target for batch enqueue of tasks without dependencies or unique keys.
COPY queued_tasks (id, name, state, parent_task, queue, priority, args, kwargs, max_retries,
                   timeout, context, headers) FROM STDIN

-- name: find_unfinished_by_unique_key
-- The unfinished task holding a unique key.
SELECT id, state FROM queued_tasks
WHERE unique_key = %(unique_key)s AND state IN ('waiting', 'enqueued', 'picked_up', 'running')

-- name: notify
-- Wake servers; the payload is a queue name, never task data. Delivered on commit.
SELECT pg_notify(%(channel)s, %(payload)s)

-- name: claim_batch
-- Claim up to %(limit)s due tasks of the given queues (all when empty) but those of %(skip)s,
-- highest priority first.
-- The claim index gives the ids (see 0005); each is then found by one primary-key probe behind
-- OFFSET 0 and updated by ctid, as in complete_batch. "id = ANY(ARRAY(...))" was planned as a
-- Seq Scan of the whole table when the plan was made while the table looked empty (a generic
-- plan cached early, kept until an ANALYZE that autovacuum may never run): 7 to 37 ms per
-- claim, growing with the table. The rows are the workers' jobs as they travel (protocol.Job),
-- sorted here: a sort of the claimed rows only.
WITH claimed AS (
    UPDATE queued_tasks t
    SET state = 'picked_up', attempts = t.attempts + 1, server_id = %(server_id)s
    FROM (
        SELECT picked.ctid AS tid
        FROM unnest(ARRAY(
            SELECT id FROM queued_tasks
            WHERE claimable = 1 AND scheduled_at <= now()  -- claimable = 1: enqueued (see 0005)
              AND (cardinality(%(queues)s::text[]) = 0 OR queue = ANY(%(queues)s::text[]))
              AND NOT (queue = ANY(%(skip)s::text[]))  -- paused and limited queues (flow.sql)
            ORDER BY priority DESC, scheduled_at, id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED)) AS c (id),
        LATERAL (SELECT ctid FROM queued_tasks q WHERE q.id = c.id OFFSET 0) AS picked
    ) AS c
    WHERE t.ctid = c.tid
    RETURNING t.id, t.name, t.args, t.kwargs, t.timeout, t.attempts, t.max_retries, t.context,
              t.queue, t.headers, t.priority, t.scheduled_at, t.workflow_inputs,
              t.crash_causes
)
SELECT id::text, name,
       CASE WHEN workflow_inputs IS NULL THEN args::text  -- a plain task: its arguments
            ELSE (  -- a workflow step fed by earlier ones: their rows, read now (see 0007)
                SELECT jsonb_build_object('qsup_inputs', claimed.workflow_inputs -> 'value',
                    'args', claimed.args,
                    'tasks', jsonb_object_agg(p.id, jsonb_build_array(p.state, p.result,
                                                                      p.error_message)))::text
                FROM jsonb_array_elements_text(claimed.workflow_inputs -> 'ids') AS i (id),
                LATERAL (SELECT id, state, result, error_message FROM queued_tasks q
                         WHERE q.id = i.id::uuid OFFSET 0) AS p)
       END,
       kwargs::text,
       coalesce(timeout, %(default_timeout)s::float8), attempts, max_retries, context::text,
       queue, headers::text, crash_causes
FROM claimed
ORDER BY priority DESC, scheduled_at, id

-- name: next_due_in
-- Seconds until the earliest delayed task (delay, eta or retry backoff) of the given queues is
-- due (NULL when none; zero or less when one became due since the claim, which the caller must
-- not sleep through). Tasks due at once announce themselves by NOTIFY.
SELECT extract(epoch FROM min(scheduled_at) - now())::float8 FROM queued_tasks
WHERE claimable = 1 AND scheduled_at > date_enqueued
  AND (cardinality(%(queues)s::text[]) = 0 OR queue = ANY(%(queues)s::text[]))
  AND NOT (queue = ANY(%(skip)s::text[]))

-- name: mark_running
-- Record that workers started these tasks.
UPDATE queued_tasks t
SET state = 'running', date_started = v.started, worker_pid = v.pid
FROM unnest(%(ids)s::uuid[], %(started)s::timestamptz[], %(pids)s::int[]) AS v (id, started, pid)
WHERE t.id = v.id AND t.server_id = %(server_id)s AND t.state = 'picked_up'

-- name: complete_batch
-- Mark tasks completed with their results, and enqueue the waiting tasks whose dependencies are
-- now all completed; returns the queues of those. One statement, so a flush of completions is
-- one round trip. The rows travel as one JSON array of {id, result, started, done, pid, cpu,
-- peak, growth} (epoch seconds; the attempt's accounting, see 0010): far cheaper to send than
-- eight arrays. The statement's snapshot still shows the
-- tasks it completes as unfinished, hence "NOT IN done".
--
-- How the outcome statements (this one, retry_batch, fail_batch) find the tasks this server
-- still holds: one primary-key probe per result row, in a LATERAL subquery behind OFFSET 0 so
-- the planner cannot turn the join around, then the update by ctid. "Held" is "server_id =
-- ours AND date_done IS NULL" (a finished task has date_done, a requeued or rescued one no
-- server_id), the same rows as "state IN ('picked_up', 'running')". A plain join, planned on
-- statistics from a quiet moment (one held task), scanned every held task and re-read the
-- whole result document for each: a flush of 500 results behind 17,000 claimed tasks took 30 s.
WITH done AS (
    UPDATE queued_tasks t
    SET state = 'completed', result = v.result, date_started = to_timestamp(v.started),
        date_done = to_timestamp(v.done), worker_pid = v.pid, error_message = NULL,
        cpu_seconds = v.cpu, peak_memory_bytes = v.peak, memory_growth_bytes = v.growth
    FROM (
        SELECT v.*, held.ctid AS tid
        FROM jsonb_to_recordset(%(rows)s::jsonb)
            AS v (id uuid, result jsonb, started float8, done float8, pid int, cpu float8,
                  peak bigint, growth bigint),
        LATERAL (SELECT ctid FROM queued_tasks q  -- held: see above
                 WHERE q.id = v.id AND q.server_id = %(server_id)s AND q.date_done IS NULL
                 OFFSET 0) AS held
    ) AS v
    WHERE t.ctid = v.tid
    RETURNING t.id
), released AS (
    UPDATE queued_tasks w SET state = 'enqueued', scheduled_at = now()
    WHERE w.state = 'waiting'
      AND w.id IN (SELECT d.task_id FROM queued_task_dependencies d JOIN done ON d.depends_on = done.id)
      AND NOT EXISTS (  -- a dependency still unfinished; its state by primary-key probe
          SELECT 1 FROM queued_task_dependencies d
          WHERE d.task_id = w.id AND d.depends_on NOT IN (SELECT id FROM done)
            AND (SELECT p.state FROM queued_tasks p WHERE p.id = d.depends_on) <> ALL (
                CASE WHEN d.tolerant THEN '{completed,failed,cancelled}'::text[]  -- see 0007
                     ELSE '{completed}'::text[] END))
    RETURNING w.queue
)
SELECT DISTINCT queue FROM released

-- name: retry_batch
-- Send failed attempts back to the queue after their backoff, with their accounting and, when
-- the worker died, its cause added to the task's crashes.
UPDATE queued_tasks t
SET state = 'enqueued', scheduled_at = now() + make_interval(secs => v.delay),
    error_message = v.error, server_id = NULL, worker_pid = NULL, date_started = NULL,
    cpu_seconds = v.cpu, peak_memory_bytes = v.peak, memory_growth_bytes = v.growth,
    crashes = t.crashes + (v.crash IS NOT NULL)::int,
    crash_causes = nullif(concat_ws(', ', t.crash_causes, v.crash), '')
FROM (
    SELECT v.*, held.ctid AS tid
    FROM unnest(%(ids)s::uuid[], %(delays)s::float8[], %(errors)s::text[], %(crashes)s::text[],
                %(cpu)s::float8[], %(peak)s::bigint[], %(growth)s::bigint[])
        AS v (id, delay, error, crash, cpu, peak, growth),
    LATERAL (SELECT ctid FROM queued_tasks q  -- held: see complete_batch
             WHERE q.id = v.id AND q.server_id = %(server_id)s AND q.date_done IS NULL
             OFFSET 0) AS held
) AS v
WHERE t.ctid = v.tid
RETURNING t.id, t.queue

-- name: fail_batch
-- Mark tasks failed for good (no attempt left, a non-retryable error, quarantine), with the
-- accounting and crash of the last attempt as in retry_batch.
UPDATE queued_tasks t
SET state = 'failed', error_message = v.error, date_done = now(),
    date_started = coalesce(t.date_started, v.started), worker_pid = coalesce(v.pid, t.worker_pid),
    cpu_seconds = v.cpu, peak_memory_bytes = v.peak, memory_growth_bytes = v.growth,
    crashes = t.crashes + (v.crash IS NOT NULL)::int,
    crash_causes = nullif(concat_ws(', ', t.crash_causes, v.crash), '')
FROM (
    SELECT v.*, held.ctid AS tid
    FROM unnest(%(ids)s::uuid[], %(errors)s::text[], %(started)s::timestamptz[],
                %(crashes)s::text[], %(cpu)s::float8[], %(peak)s::bigint[], %(growth)s::bigint[],
                %(pids)s::int[])
        AS v (id, error, started, crash, cpu, peak, growth, pid),
    LATERAL (SELECT ctid FROM queued_tasks q  -- held: see complete_batch
             WHERE q.id = v.id AND q.server_id = %(server_id)s AND q.date_done IS NULL
             OFFSET 0) AS held
) AS v
WHERE t.ctid = v.tid
RETURNING t.id

-- name: release_unknown
-- Requeue, without using an attempt, what this server holds in the database but does not know
-- of (a claim that committed while its reply was lost with the connection).
UPDATE queued_tasks
SET state = 'enqueued', attempts = greatest(attempts - 1, 0), server_id = NULL,
    worker_pid = NULL, date_started = NULL, flow_slot = NULL
WHERE server_id = %(server_id)s AND state IN ('picked_up', 'running')
  AND NOT (id = ANY(%(known)s::uuid[]))
RETURNING queue

-- name: release_batch
-- Give claimed tasks back without using an attempt, their last error kept (never started, or
-- stopped by a drain); they hold no slot of a limited queue any more (see 0008).
UPDATE queued_tasks
SET state = 'enqueued', attempts = greatest(attempts - 1, 0), server_id = NULL,
    worker_pid = NULL, date_started = NULL, flow_slot = NULL
WHERE id = ANY(%(ids)s::uuid[]) AND server_id = %(server_id)s AND state IN ('picked_up', 'running')
RETURNING queue

-- name: cancel_dependents
-- Cancel, recursively, every waiting task that depends on one of these failed/cancelled tasks
-- (not through a tolerant dependency: that one is released instead, see 0007).
WITH RECURSIVE doomed AS (
    SELECT task_id AS id, depends_on AS root FROM queued_task_dependencies
    WHERE depends_on = ANY(%(ids)s::uuid[]) AND NOT tolerant
    UNION
    SELECT d.task_id, doomed.root FROM queued_task_dependencies d JOIN doomed ON d.depends_on = doomed.id
    WHERE NOT d.tolerant
), cancelled AS (
    UPDATE queued_tasks t
    SET state = 'cancelled', date_done = now(),
        error_message = 'cancelled: dependency ' || doomed.root || ' failed or was cancelled'
    FROM doomed WHERE t.id = doomed.id AND t.state = 'waiting'
    RETURNING t.id, t.error_message
)
INSERT INTO queued_task_logs (queued_task_id, type, message)
SELECT id, 'cancelled', error_message FROM cancelled
RETURNING queued_task_id

-- name: insert_logs
-- Append task log rows.
INSERT INTO queued_task_logs (queued_task_id, type, message, date_created)
SELECT * FROM unnest(%(ids)s::uuid[], %(types)s::text[], %(messages)s::text[],
                     %(dates)s::timestamptz[])

-- name: save_reports
-- Persist what running tasks reported: contexts they saved, their latest progress (a NULL
-- leaves the column as it was). By primary-key probe: see complete_batch.
UPDATE queued_tasks t
SET context = coalesce(v.context, t.context), progress = coalesce(v.progress, t.progress)
FROM (
    SELECT v.context, v.progress, task.ctid AS tid
    FROM unnest(%(ids)s::uuid[], %(contexts)s::jsonb[], %(progress)s::jsonb[])
        AS v (id, context, progress),
    LATERAL (SELECT ctid FROM queued_tasks q WHERE q.id = v.id OFFSET 0) AS task
) AS v
WHERE t.ctid = v.tid

-- name: register_server
-- A supervisor announces itself and takes its liveness lock on this connection (see 0010) in
-- the same statement: no other server can see its row without the lock held, and makes the
-- session's keepalives short (see take_liveness_lock). Not with take_lock false: the lock then
-- lives on a direct connection (behind a pooler) and is taken there.
WITH ins AS (
    INSERT INTO queued_task_workers (server_name, max_workers, hostname, pid, queues,
                                     liveness_lock)
    VALUES (%(server_name)s, %(max_workers)s, %(hostname)s, %(pid)s, %(queues)s, true)
    RETURNING id
)
SELECT id, CASE WHEN %(take_lock)s THEN
           (pg_advisory_lock(%(lock_class)s, id), set_config('tcp_keepalives_idle', '2', false),
            set_config('tcp_keepalives_interval', '1', false),
            set_config('tcp_keepalives_count', '3', false))::text END
FROM ins

-- name: take_liveness_lock
-- After a reconnection: take this server's liveness lock again (false while another session
-- holds it: our old one the database has not noticed dead yet, or a server declaring us dead).
-- The server-side keepalives make a vanished host's session, and so its lock, end in seconds.
SELECT pg_try_advisory_lock(%(lock_class)s, %(server_id)s::int),
       set_config('tcp_keepalives_idle', '2', false),
       set_config('tcp_keepalives_interval', '1', false),
       set_config('tcp_keepalives_count', '3', false)

-- name: server_is_running
-- Whether this server's row is still marked running (asked once its lock is held again: no
-- other server can declare it dead from then on).
SELECT is_running FROM queued_task_workers WHERE id = %(server_id)s

-- name: lock_free_servers
-- The running servers whose liveness lock nobody holds: their session ended (the process or
-- its host died). One scan of the lock table, every few seconds (liveness.CHECK_EVERY).
SELECT coalesce(array_agg(w.id), '{}') FROM queued_task_workers w
WHERE w.is_running AND w.liveness_lock AND w.id <> %(server_id)s
  AND w.id NOT IN (SELECT qsup_live_servers(%(lock_class)s))

-- name: declare_lock_free_dead
-- Declare dead the servers among %(ids)s whose lock is still free a few seconds later; the
-- lock is held by this transaction while it does, so such a server cannot take it back
-- unseen (it then finds itself declared dead and stops its tasks first).
UPDATE queued_task_workers
SET is_running = false, date_stopped = now(), active_workers = 0, idle_workers = 0
WHERE id = ANY(%(ids)s::int[]) AND is_running AND liveness_lock
  AND pg_try_advisory_xact_lock(%(lock_class)s, id)
RETURNING id, server_name

-- name: heartbeat
-- One round trip per beat: refresh this server's row (reviving it if another server declared
-- it dead), declare dead the servers silent longer than %(timeout)s seconds (when
-- %(may_declare)s), and report what the beat must act on: whether this server was still marked
-- running, the servers just declared dead, whether tasks of dead servers await rescue, the
-- tasks an operator asked to cancel, whether a task of our queues is due (the safety net in
-- case a NOTIFY was missed), and our tasks an operator asked to inspect and got no answer yet
-- (queued_task_probes: a row per task looked at in the last hour).
WITH old AS (
    SELECT id, is_running FROM queued_task_workers WHERE id = %(server_id)s FOR UPDATE
), beat AS (
    UPDATE queued_task_workers w
    SET last_heartbeat = now(), max_workers = %(max_workers)s, active_workers = %(active)s,
        idle_workers = %(idle)s, is_running = true, date_stopped = NULL,
        counters = %(counters)s::jsonb
    FROM old WHERE w.id = old.id
    RETURNING old.is_running
), dead AS (
    UPDATE queued_task_workers
    SET is_running = false, date_stopped = now(), active_workers = 0, idle_workers = 0
    WHERE %(may_declare)s AND is_running AND id <> %(server_id)s
      AND last_heartbeat < now() - make_interval(secs => %(timeout)s)
      -- only slow: its lock is held, its tasks still run
      AND NOT (liveness_lock AND id IN (SELECT qsup_live_servers(%(lock_class)s)))
    RETURNING id, server_name
)
SELECT (SELECT is_running FROM beat),
       (SELECT coalesce(array_agg(server_name), '{}') FROM dead),
       EXISTS (SELECT 1 FROM dead)
           OR EXISTS (SELECT 1 FROM queued_tasks t
                      LEFT JOIN queued_task_workers w ON w.id = t.server_id
                      WHERE t.state IN ('picked_up', 'running') AND NOT coalesce(w.is_running, false)),
       (SELECT coalesce(array_agg(id::text), '{}') FROM queued_tasks
        WHERE server_id = %(server_id)s AND cancel_requested AND state IN ('picked_up', 'running')),
       EXISTS (SELECT 1 FROM queued_tasks
               WHERE claimable = 1 AND scheduled_at <= now()
                 AND (cardinality(%(queues)s::text[]) = 0 OR queue = ANY(%(queues)s::text[]))),
       (SELECT coalesce(array_agg(p.task_id::text), '{}') FROM queued_task_probes p
        JOIN queued_tasks t ON t.id = p.task_id
        WHERE (p.answered_at IS NULL OR p.answered_at < p.requested_at)
          AND t.server_id = %(server_id)s
          AND t.state IN ('picked_up', 'running'))

-- name: stop_server
-- Clean exit: the row stays for history, marked not running.
UPDATE queued_task_workers
SET is_running = false, date_stopped = now(), active_workers = 0, idle_workers = 0
WHERE id = %(server_id)s

-- name: rescue_orphans
-- Take back the tasks held by servers that are not running (or whose row is gone). A task is
-- charged an attempt only if it started, and "started" is what the database knows: the
-- dead server wrote its start (state running; starts are written in batches, once a task has
-- run 0.1 s, or with its outcome). A picked_up one sat in the buffer, was queued to a worker,
-- or began less than about 0.1 s before its server died: it goes back to the queue in its
-- place with its attempt and last error unchanged. Only the last case ran, and a task that
-- kills its server that fast would be rescued for free forever, so the orphanings are
-- counted: past %(max_crashes)s of them (QUEUE_MAX_CRASHES; 0: never) the task is
-- quarantined. A running one is charged: retried at once, or failed when no attempt is left.
-- Each gets a log row naming the dead server and when it was declared dead. A late outcome
-- from the dead server finds the task no longer held (server_id cleared: see complete_batch)
-- and changes nothing; rows its writer has locked are skipped and seen at the next pass.
WITH orphans AS (
    SELECT t.id, t.state = 'running' AS ran, CASE
               WHEN t.state = 'running' AND t.attempts <= t.max_retries THEN 'retry'
               WHEN t.state = 'running' THEN 'fail'
               WHEN %(max_crashes)s > 0 AND t.orphaned >= %(max_crashes)s THEN 'quarantine'
               ELSE 'requeue' END AS verdict,
           'server ' || t.server_id || coalesce(' (' || w.server_name || ')', '') AS dead,
           coalesce(' (declared dead at '
                    || to_char(w.date_stopped AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                    || ' UTC)', '') AS at
    FROM queued_tasks t LEFT JOIN queued_task_workers w ON w.id = t.server_id
    WHERE t.state IN ('picked_up', 'running') AND NOT coalesce(w.is_running, false)
    FOR UPDATE OF t SKIP LOCKED
), rescued AS (
    UPDATE queued_tasks t
    SET state = CASE WHEN o.verdict IN ('retry', 'requeue') THEN 'enqueued' ELSE 'failed' END,
        date_done = CASE WHEN o.verdict IN ('fail', 'quarantine') THEN now() END,
        attempts = t.attempts - (o.verdict = 'requeue')::int,
        orphaned = t.orphaned + (NOT o.ran)::int,
        error_message = CASE o.verdict
            WHEN 'requeue' THEN t.error_message
            WHEN 'quarantine' THEN 'quarantined: ' || t.orphaned + 1 || ' servers died holding'
                                   || ' it before its start was written; the last: ' || o.dead
                                   || o.at
            ELSE 'ServerDied: ' || o.dead || ' died while the task ran' || o.at END,
        server_id = NULL,
        worker_pid = CASE WHEN o.verdict = 'fail' THEN t.worker_pid END,  -- as fail_batch
        date_started = CASE WHEN o.verdict = 'fail' THEN t.date_started END,
        flow_slot = NULL  -- holds no slot of a limited queue once back (see 0008)
    FROM orphans o WHERE t.id = o.id
    RETURNING t.id, t.state, t.queue, t.error_message, t.attempts, t.max_retries, o.verdict,
              o.dead, o.at
), logged AS (
    INSERT INTO queued_task_logs (queued_task_id, type, message)
    SELECT id, CASE WHEN verdict = 'requeue' THEN 'rescued' ELSE 'error' END, CASE verdict
        WHEN 'requeue' THEN dead || ' died before the task started' || at
                            || ': requeued without using an attempt'
        WHEN 'quarantine' THEN error_message
        WHEN 'retry' THEN 'attempt ' || attempts || '/' || max_retries + 1 || ' failed, retry'
                          || ' now: ' || error_message
        ELSE 'attempt ' || attempts || '/' || max_retries + 1 || ' failed, no retry left: '
             || error_message END
    FROM rescued
)
SELECT id, state, queue, error_message, verdict FROM rescued

-- name: listen
-- Subscribe to the wake-up channel (an identifier, composed with psycopg.sql).
LISTEN {channel}

-- name: get_task
-- One task by id.
SELECT id, name, state, parent_task, queue, priority, args, kwargs, date_enqueued, date_started,
       date_done, scheduled_at, attempts, max_retries, timeout, unique_key, context, result,
       error_message, server_id, worker_pid, cpu_seconds, peak_memory_bytes,
       memory_growth_bytes, crashes, crash_causes, headers, concurrency_key, progress
FROM queued_tasks WHERE id = %(id)s

-- name: find_task_ids
-- Tasks whose id (32 hex digits) starts or ends with %(digits)s, each row with the number of
-- matches. The prefix is a range of the primary key; the suffix (the random tail people see as
-- the short id) needs a scan.
WITH matches AS (
    SELECT id FROM queued_tasks WHERE id BETWEEN %(low)s AND %(high)s
    UNION
    SELECT id FROM queued_tasks
    WHERE right(replace(id::text, '-', ''), length(%(digits)s::text)) = %(digits)s::text
)
SELECT id, count(*) OVER () FROM matches ORDER BY id LIMIT %(limit)s

-- name: task_outcome
-- What a waiting caller needs to know about a task.
SELECT state, result, error_message FROM queued_tasks WHERE id = %(id)s

-- name: task_logs
-- A task's log rows, oldest first.
SELECT id, type, message, date_created FROM queued_task_logs
WHERE queued_task_id = %(id)s ORDER BY date_created, id

-- name: oldest_waiting
-- Age in seconds of the oldest due task still enqueued: the first entry of each priority in
-- the claim index (a skip scan over the few priorities), not every waiting row (100,000
-- waiting tasks: 75 ms).
WITH RECURSIVE levels (priority) AS (
    (SELECT priority FROM queued_tasks WHERE claimable = 1 ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT q.priority FROM queued_tasks q
            WHERE q.claimable = 1 AND q.priority < levels.priority
            ORDER BY q.priority DESC LIMIT 1)
    FROM levels WHERE levels.priority IS NOT NULL
)
SELECT extract(epoch FROM now() - min(first.scheduled_at))::float8
FROM levels, LATERAL (SELECT q.scheduled_at FROM queued_tasks q
                      WHERE q.claimable = 1 AND q.priority = levels.priority
                      ORDER BY q.priority DESC, q.scheduled_at LIMIT 1) AS first
WHERE first.scheduled_at <= now()

-- name: list_servers
-- Servers, running ones first.
SELECT id, server_name, hostname, pid, max_workers, active_workers, idle_workers, is_running,
       last_heartbeat, queues, date_started, date_stopped
FROM queued_task_workers
WHERE is_running OR date_stopped > now() - interval '1 day'
ORDER BY is_running DESC, id DESC

-- name: cancel_batch
-- Mark held tasks cancelled (their worker was stopped).
UPDATE queued_tasks
SET state = 'cancelled', date_done = now(), error_message = 'cancelled by operator'
WHERE id = ANY(%(ids)s::uuid[]) AND server_id = %(server_id)s AND state IN ('picked_up', 'running')
RETURNING id
