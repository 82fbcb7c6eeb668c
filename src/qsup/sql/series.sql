-- The per-minute series of outcomes (queued_task_minutes, migration 0014) and the task counts
-- that stay cheap at millions of rows. Parameters use %(name)s style.

-- name: series_record
-- Add outcomes a server's writer stored (at most a second ago, supervisor/tally.py) to the
-- series: one row per minute, queue and task name, summed into what other servers already
-- wrote (rows in key order, so two servers upserting the same minutes cannot deadlock).
-- Reads the tasks back by primary key; a completion or failure counts only while the task is
-- still this server's outcome (one rescued meanwhile is not), a retry whatever happened since
-- (it may already run again; its minute is now). Bucket of x seconds:
-- ceil(2 * log2(x / 1 ms)) clamped to 0..46 (see 0014).
WITH outcome AS (
    SELECT date_trunc('minute', CASE WHEN k.kind = 'retried' THEN now() ELSE t.date_done END)
               AS minute,
           t.queue, t.name, k.kind, t.cpu_seconds, t.peak_memory_bytes, t.memory_growth_bytes,
           extract(epoch FROM t.date_done - t.date_started)::float8 AS run,
           extract(epoch FROM t.date_started - t.scheduled_at)::float8 AS wait
    FROM (SELECT unnest(%(completed)s::uuid[]) AS id, 'completed' AS kind
          UNION ALL SELECT unnest(%(failed)s::uuid[]), 'failed'
          UNION ALL SELECT unnest(%(retried)s::uuid[]), 'retried') AS k
        CROSS JOIN LATERAL (  -- one primary-key probe per id whatever the plan (complete_batch)
            SELECT q.state, q.server_id, q.queue, q.name, q.date_done, q.date_started,
                   q.scheduled_at, q.cpu_seconds, q.peak_memory_bytes, q.memory_growth_bytes
            FROM queued_tasks q WHERE q.id = k.id OFFSET 0) AS t
    WHERE k.kind = 'retried' OR (t.state = k.kind AND t.server_id = %(server_id)s)
), timed AS (
    SELECT *,
           least(46, greatest(0, ceil(2 * ln(greatest(run, 0.001) * 1000) / ln(2) - 1e-9)))::int
               AS run_bucket,
           least(46, greatest(0, ceil(2 * ln(greatest(wait, 0.001) * 1000) / ln(2) - 1e-9)))::int
               AS wait_bucket,
           least(46, greatest(0, ceil(2 * ln(greatest(cpu_seconds, 0.001) * 1000) / ln(2) - 1e-9)))::int
               AS cpu_bucket
    FROM outcome
), grouped AS (
    SELECT minute, queue, name,
           count(*) FILTER (WHERE kind = 'completed') AS completed,
           count(*) FILTER (WHERE kind = 'failed') AS failed,
           count(*) FILTER (WHERE kind = 'retried') AS retried,
           coalesce(sum(run) FILTER (WHERE kind <> 'retried'), 0) AS run_seconds,
           coalesce(sum(greatest(wait, 0)) FILTER (WHERE kind <> 'retried' AND run IS NOT NULL), 0)
               AS wait_seconds,
           array_agg(run_bucket) FILTER (WHERE kind <> 'retried' AND run IS NOT NULL) AS runs,
           array_agg(wait_bucket) FILTER (WHERE kind <> 'retried' AND run IS NOT NULL) AS waits,
           array_agg(cpu_bucket) FILTER (WHERE cpu_seconds IS NOT NULL) AS cpus,
           count(cpu_seconds) AS measured, coalesce(sum(cpu_seconds), 0) AS cpu_seconds,
           max(peak_memory_bytes) AS peak_memory_bytes,
           coalesce(sum(memory_growth_bytes), 0) AS memory_growth_bytes
    FROM timed GROUP BY minute, queue, name
)
INSERT INTO queued_task_minutes AS m
    (minute, queue, name, completed, failed, retried, run_seconds, wait_seconds, run_buckets,
     wait_buckets, measured, cpu_seconds, cpu_buckets, peak_memory_bytes, memory_growth_bytes)
SELECT minute, queue, name, completed, failed, retried, run_seconds, wait_seconds,
       ARRAY(SELECT coalesce(c.n, 0) FROM generate_series(0, 46) AS i
             LEFT JOIN (SELECT b, count(*)::int AS n FROM unnest(runs) AS b GROUP BY b) AS c
             ON c.b = i ORDER BY i),
       ARRAY(SELECT coalesce(c.n, 0) FROM generate_series(0, 46) AS i
             LEFT JOIN (SELECT b, count(*)::int AS n FROM unnest(waits) AS b GROUP BY b) AS c
             ON c.b = i ORDER BY i),
       measured, cpu_seconds,
       ARRAY(SELECT coalesce(c.n, 0) FROM generate_series(0, 46) AS i
             LEFT JOIN (SELECT b, count(*)::int AS n FROM unnest(cpus) AS b GROUP BY b) AS c
             ON c.b = i ORDER BY i),
       peak_memory_bytes, memory_growth_bytes
FROM grouped ORDER BY minute, queue, name
ON CONFLICT (minute, queue, name) DO UPDATE
SET completed = m.completed + excluded.completed,
    failed = m.failed + excluded.failed,
    retried = m.retried + excluded.retried,
    run_seconds = m.run_seconds + excluded.run_seconds,
    wait_seconds = m.wait_seconds + excluded.wait_seconds,
    run_buckets = ARRAY(SELECT a + b FROM unnest(m.run_buckets, excluded.run_buckets)
                        WITH ORDINALITY AS u (a, b, i) ORDER BY i),
    wait_buckets = ARRAY(SELECT a + b FROM unnest(m.wait_buckets, excluded.wait_buckets)
                         WITH ORDINALITY AS u (a, b, i) ORDER BY i),
    measured = m.measured + excluded.measured,
    cpu_seconds = m.cpu_seconds + excluded.cpu_seconds,
    cpu_buckets = ARRAY(SELECT a + b FROM unnest(m.cpu_buckets, excluded.cpu_buckets)
                        WITH ORDINALITY AS u (a, b, i) ORDER BY i),
    peak_memory_bytes = greatest(m.peak_memory_bytes, excluded.peak_memory_bytes),
    memory_growth_bytes = m.memory_growth_bytes + excluded.memory_growth_bytes

-- name: series_read
-- The series from %(since)s on (or the last %(seconds)s seconds by the database's clock), in
-- steps of %(step)s seconds, per queue (one queue with %(queue)s), oldest first; digests
-- summed element by element.
WITH rows AS (
    SELECT date_bin(make_interval(secs => %(step)s), minute, timestamptz 'epoch') AS at, m.*
    FROM queued_task_minutes m
    WHERE minute >= date_trunc('minute', coalesce(
              %(since)s::timestamptz, now() - make_interval(secs => %(seconds)s)))
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
), totals AS (
    SELECT at, queue, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed,
           sum(retried)::bigint AS retried, sum(run_seconds)::float8 AS run_seconds,
           sum(wait_seconds)::float8 AS wait_seconds
    FROM rows GROUP BY at, queue
), digests AS (  -- only the buckets some row uses: most of the 47 are zero
    SELECT at, queue, array_agg(i ORDER BY i) AS buckets, array_agg(r ORDER BY i) AS runs,
           array_agg(w ORDER BY i) AS waits
    FROM (SELECT at, queue, u.i, sum(u.r)::bigint AS r, sum(u.w)::bigint AS w
          FROM rows, unnest(run_buckets, wait_buckets) WITH ORDINALITY AS u (r, w, i)
          WHERE u.r + u.w > 0
          GROUP BY at, queue, u.i) AS per_bucket
    GROUP BY at, queue
)
SELECT t.at, t.queue, t.completed, t.failed, t.retried, t.run_seconds, t.wait_seconds,
       d.buckets, d.runs, d.waits
FROM totals t LEFT JOIN digests d USING (at, queue)
ORDER BY t.at, t.queue

-- name: series_by_task
-- Per task name over the last %(seconds)s seconds (from the start of that minute): outcomes,
-- run-time and wait sums and digests, the cost of the measured attempts, and the completions
-- since the start of the previous minute.
WITH rows AS (
    SELECT * FROM queued_task_minutes
    WHERE minute >= date_trunc('minute', now() - make_interval(secs => %(seconds)s))
), totals AS (
    SELECT name, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed,
           sum(retried)::bigint AS retried, sum(run_seconds)::float8 AS run_seconds,
           sum(wait_seconds)::float8 AS wait_seconds, sum(measured)::bigint AS measured,
           sum(cpu_seconds)::float8 AS cpu_seconds, max(peak_memory_bytes) AS peak_memory_bytes,
           sum(memory_growth_bytes)::bigint AS memory_growth_bytes,
           coalesce(sum(completed) FILTER (
               WHERE minute >= date_trunc('minute', now() - interval '1 minute')), 0)::bigint
               AS completed_last_minute
    FROM rows GROUP BY name
), digests AS (  -- only the buckets some row uses (as in series_read)
    SELECT name, array_agg(i ORDER BY i) AS buckets, array_agg(r ORDER BY i) AS runs,
           array_agg(w ORDER BY i) AS waits, array_agg(c ORDER BY i) AS cpus
    FROM (SELECT name, u.i, sum(u.r)::bigint AS r, sum(u.w)::bigint AS w, sum(u.c)::bigint AS c
          FROM rows, unnest(run_buckets, wait_buckets, cpu_buckets) WITH ORDINALITY
              AS u (r, w, c, i)
          WHERE u.r + u.w + u.c > 0
          GROUP BY name, u.i) AS per_bucket
    GROUP BY name
)
SELECT t.*, d.buckets, d.runs, d.waits, d.cpus FROM totals t LEFT JOIN digests d USING (name)
ORDER BY t.name

-- name: series_prune
-- Delete up to %(limit)s series rows older than the result TTL (%(ttl)s seconds); the pruner
-- calls it until it deletes fewer than the limit.
DELETE FROM queued_task_minutes
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM queued_task_minutes
    WHERE minute < now() - make_interval(secs => %(ttl)s)
    LIMIT %(limit)s))

-- name: task_counts
-- Tasks per queue and state: each (state, queue) pair found by a skip scan of the (state,
-- queue) index (0014), then counted there (index-only) up to %(cap)s + 1 entries, so a read
-- is bounded by the pairs, not the table. The count reads the pair as a range in index order:
-- with plain equalities a generic or stale plan chose a seq scan that stops after %(cap)s
-- rows of a common pair but reads the whole table for a rare one. A pair past the cap is estimated (and marked): the
-- planner's statistics of the pair (queued_tasks_state_queue) times the table's rows now, as
-- the planner scales reltuples by the current size; at least what was counted.
WITH RECURSIVE pairs (state, queue) AS (
    (SELECT state, queue FROM queued_tasks ORDER BY state, queue LIMIT 1)
    UNION ALL
    SELECT next.state, next.queue FROM pairs,
        LATERAL (SELECT t.state, t.queue FROM queued_tasks t
                 WHERE (t.state, t.queue) > (pairs.state, pairs.queue)
                 ORDER BY t.state, t.queue LIMIT 1) AS next
), counted AS (
    SELECT pairs.state, pairs.queue, c.n FROM pairs,
        LATERAL (SELECT count(*) AS n FROM (  -- a range in index order: never a seq scan
            SELECT 1 FROM queued_tasks t
            WHERE (t.state, t.queue) >= (pairs.state, pairs.queue)
              AND (t.state, t.queue) <= (pairs.state, pairs.queue)
            ORDER BY t.state, t.queue LIMIT %(cap)s + 1) AS capped) AS c
), table_rows AS (
    SELECT CASE WHEN c.reltuples >= 0 AND c.relpages > 0
                THEN c.reltuples / c.relpages
                     * (pg_relation_size(c.oid) / current_setting('block_size')::float8)
           END AS n
    FROM pg_class c WHERE c.oid = 'queued_tasks'::regclass
), planned AS (
    SELECT s.most_common_vals[k][1] AS state, s.most_common_vals[k][2] AS queue,
           s.most_common_freqs[k] * table_rows.n AS n
    FROM table_rows, pg_stats_ext s, generate_subscripts(s.most_common_freqs, 1) AS k
    WHERE s.schemaname = current_schema() AND s.tablename = 'queued_tasks'
      AND s.statistics_name = 'queued_tasks_state_queue'
)
SELECT c.queue, c.state,
       CASE WHEN c.n > %(cap)s THEN greatest(c.n, coalesce(round(p.n), 0)) ELSE c.n END::bigint,
       c.n > %(cap)s
FROM counted c LEFT JOIN planned p ON p.state = c.state AND p.queue = c.queue
ORDER BY c.queue, c.state
