-- Flow control: the limited claim (functions/claim_limited.sql), pauses and limits (tables of
-- migration 0008).

-- name: claim_limited
-- Claim tasks of limited queues, in the order given, up to %(want)s in all: the jobs (queue
-- set; ahead: taken ahead, holding no slot yet) and one status row per queue (id NULL; see
-- qsup_claim_limited for retry_in).
SELECT * FROM qsup_claim_limited(%(queues)s::text[], %(server_id)s, %(want)s,
                                 %(default_timeout)s::float8, %(finished)s::uuid[],
                                 %(aheads)s::integer[])

-- name: hand_on_slots
-- Tasks taken ahead that now run in the slot of a task this server saw end: they hold it (in
-- the flush that writes that task's outcome, so the count never drops between the two).
-- One primary-key probe per task, behind OFFSET 0 as in complete_batch.
UPDATE queued_tasks t SET flow_slot = 1
FROM (SELECT p.ctid AS tid FROM unnest(%(ids)s::uuid[]) AS i (id),
      LATERAL (SELECT ctid FROM queued_tasks q WHERE q.id = i.id AND q.server_id = %(server_id)s
               AND q.flow_slot = 2 AND q.state IN ('picked_up', 'running') OFFSET 0) AS p) AS c
WHERE t.ctid = c.tid

-- name: flow_state
-- Every queue with a pause or a limit, the runtime value of each limit before the file's.
SELECT queue, paused, coalesce(concurrency, file_concurrency),
       coalesce(rate, file_rate), coalesce(period, file_period),
       coalesce(key_concurrency, file_key_concurrency)
FROM queued_task_queues
WHERE paused OR coalesce(concurrency, file_concurrency, rate, file_rate, key_concurrency,
                         file_key_concurrency) IS NOT NULL

-- name: declare_file_limits
-- A server declares its file's [limits] (%(declared)s, the JSON of its row's file_limits;
-- NULL: its file has none) and the queues it names that have no file limits in force take
-- them (the first file wins; see 0011); returns those queues, and wakes the servers. What is
-- in force for any other queue changes only by an explicit act (apply_file_limits, the
-- runtime limits). Two servers starting at once: the second's ON CONFLICT sees the first's
-- row and leaves it.
WITH server AS (
    UPDATE queued_task_workers SET file_limits = %(declared)s::jsonb WHERE id = %(server_id)s
    RETURNING id
), adopted AS (
    INSERT INTO queued_task_queues AS c (queue, file_concurrency, file_rate, file_period,
                                         file_key_concurrency, file_source)
    SELECT f.queue, f.concurrency, f.rate, f.period, f.key_concurrency, %(source)s
    FROM unnest(%(queues)s::text[], %(concurrency)s::int[], %(rate)s::int[],
                %(period)s::float8[], %(key_concurrency)s::int[])
        AS f (queue, concurrency, rate, period, key_concurrency)
    ON CONFLICT (queue) DO UPDATE
    SET file_concurrency = excluded.file_concurrency, file_rate = excluded.file_rate,
        file_period = excluded.file_period,
        file_key_concurrency = excluded.file_key_concurrency,
        file_source = excluded.file_source, date_updated = now()
    WHERE num_nonnulls(c.file_concurrency, c.file_rate, c.file_key_concurrency) = 0
    RETURNING c.queue
)
SELECT queue, CASE WHEN %(channel)s::text IS NOT NULL
                   THEN pg_notify(%(channel)s, 'qsup:flow') END IS NULL
FROM adopted

-- name: file_limits_in_force
-- The file limits in force of some queues and where they came from.
SELECT queue, file_concurrency, file_rate, file_period, file_key_concurrency, file_source
FROM queued_task_queues WHERE queue = ANY(%(queues)s::text[])

-- name: declared_file_limits
-- The [limits] each running server's file declared (see declare_file_limits).
SELECT id, hostname, file_limits FROM queued_task_workers
WHERE is_running AND file_limits IS NOT NULL ORDER BY id

-- name: apply_file_limits
-- An explicit act (`qsup queue limits --apply`): a file's [limits] become the file limits of
-- every queue, queues it does not name lose theirs; returns the queues whose file limits
-- this changed, and wakes the servers.
WITH file AS (
    SELECT * FROM unnest(%(queues)s::text[], %(concurrency)s::int[], %(rate)s::int[],
                         %(period)s::float8[], %(key_concurrency)s::int[])
        AS f (queue, concurrency, rate, period, key_concurrency)
), wanted AS (
    SELECT coalesce(f.queue, c.queue) AS queue, f.concurrency, f.rate, f.period,
           f.key_concurrency
    FROM file f FULL JOIN queued_task_queues c ON c.queue = f.queue
    WHERE (f.concurrency, f.rate, f.period, f.key_concurrency)
          IS DISTINCT FROM (c.file_concurrency, c.file_rate, c.file_period, c.file_key_concurrency)
), changed AS (
    INSERT INTO queued_task_queues AS c (queue, file_concurrency, file_rate, file_period,
                                         file_key_concurrency, file_source)
    SELECT queue, concurrency, rate, period, key_concurrency,
           CASE WHEN num_nonnulls(concurrency, rate, key_concurrency) > 0 THEN %(source)s END
    FROM wanted
    ON CONFLICT (queue) DO UPDATE
    SET file_concurrency = excluded.file_concurrency, file_rate = excluded.file_rate,
        file_period = excluded.file_period,
        file_key_concurrency = excluded.file_key_concurrency,
        file_source = excluded.file_source, date_updated = now()
    RETURNING c.queue
)
SELECT queue, CASE WHEN %(channel)s::text IS NOT NULL
                   THEN pg_notify(%(channel)s, 'qsup:flow') END IS NULL
FROM changed

-- name: set_paused
-- Pause or resume a queue; wakes every server (they reload the flow state).
WITH q AS (
    INSERT INTO queued_task_queues AS c (queue, paused) VALUES (%(queue)s, %(paused)s)
    ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused, date_updated = now()
    RETURNING c.queue
)
SELECT queue, CASE WHEN %(channel)s::text IS NOT NULL
                   THEN pg_notify(%(channel)s, 'qsup:flow') END IS NULL
FROM q

-- name: set_runtime_limits
-- Runtime overrides of a queue's limits (NULL: keep the one set before); with %(clear)s,
-- drop them all first. Wakes every server.
WITH q AS (
    INSERT INTO queued_task_queues AS c (queue, concurrency, rate, period, key_concurrency)
    VALUES (%(queue)s, %(concurrency)s, %(rate)s, %(period)s, %(key_concurrency)s)
    ON CONFLICT (queue) DO UPDATE
    SET concurrency = CASE WHEN %(clear)s THEN NULL
                           ELSE coalesce(excluded.concurrency, c.concurrency) END,
        rate = CASE WHEN %(clear)s THEN NULL ELSE coalesce(excluded.rate, c.rate) END,
        period = CASE WHEN %(clear)s THEN NULL ELSE coalesce(excluded.period, c.period) END,
        key_concurrency = CASE WHEN %(clear)s THEN NULL
                               ELSE coalesce(excluded.key_concurrency, c.key_concurrency) END,
        date_updated = now()
    RETURNING c.queue
)
SELECT queue, CASE WHEN %(channel)s::text IS NOT NULL
                   THEN pg_notify(%(channel)s, 'qsup:flow') END IS NULL
FROM q

-- name: flow_usage
-- Every queue with a pause or a limit: file and runtime limits, where the file limits came
-- from, tasks running now (claimed under the limits) and starts in the current rate window.
SELECT c.queue, c.paused, c.file_concurrency, c.file_rate, c.file_period,
       c.file_key_concurrency, c.concurrency, c.rate, c.period, c.key_concurrency,
       c.file_source,
       (SELECT count(*) FROM queued_tasks t
        WHERE t.flow_slot = 1 AND t.state IN ('picked_up', 'running') AND t.queue = c.queue),
       (SELECT coalesce(sum(s.n), 0) FROM queued_task_starts s
        WHERE s.queue = c.queue
          AND s.at > clock_timestamp()
                     - make_interval(secs => coalesce(c.period, c.file_period, 0)))
FROM queued_task_queues c
WHERE c.paused OR coalesce(c.concurrency, c.file_concurrency, c.rate, c.file_rate,
                           c.key_concurrency, c.file_key_concurrency) IS NOT NULL
ORDER BY c.queue
