-- Raw SQL of the benchmark (scripts/bench.py): references, ceiling loop and measurements.
-- Loaded with qsup.sql.parse_queries; parameters use psycopg's %(name)s style.

-- name: create_database
-- A fresh database per scenario (identifier composed with psycopg.sql).
CREATE DATABASE {name}

-- name: drop_database
-- Drop a scenario's database, closing what still uses it.
DROP DATABASE IF EXISTS {name} WITH (FORCE)

-- name: reset
-- Empty the task tables between repeats.
TRUNCATE queued_task_logs, queued_task_dependencies, queued_tasks, queued_task_workers
RESTART IDENTITY CASCADE

-- name: bare_insert
-- Reference for single enqueue: the smallest INSERT of one task row, one round trip.
INSERT INTO queued_tasks (id, name, args, kwargs) VALUES (%(id)s, %(name)s, %(args)s, %(kwargs)s)

-- name: bare_copy
-- Reference for batch enqueue: COPY of the fewest columns.
COPY queued_tasks (id, name, args, kwargs) FROM STDIN

-- name: ceiling_claim
-- The raw ceiling: claim a batch with SKIP LOCKED, as small as a claim can be (through the
-- same claim index as qsup: "claimable = 1" is the generated "state = 'enqueued'").
UPDATE queued_tasks SET state = 'picked_up', attempts = attempts + 1
WHERE id IN (
    SELECT id FROM queued_tasks
    WHERE claimable = 1 AND scheduled_at <= now()
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING id, name, args, kwargs

-- name: ceiling_complete
-- The raw ceiling: complete a batch in one statement.
UPDATE queued_tasks SET state = 'completed', result = 'null', date_done = now()
WHERE id = ANY(%(ids)s::uuid[])

-- name: remaining
-- Tasks not finished yet (uses the state index).
SELECT count(*) FROM queued_tasks WHERE state IN ('waiting', 'enqueued', 'picked_up', 'running')

-- name: completed_span
-- Completed tasks and the seconds from the first start to the last end, per the database.
SELECT count(*), extract(epoch FROM max(date_done) - min(date_started))::float8
FROM queued_tasks WHERE state = 'completed' AND name <> 'bench_filler'

-- name: results
-- Results of completed tasks (the latency task returns its start time).
SELECT id, result FROM queued_tasks WHERE state = 'completed' AND name <> 'bench_filler'

-- name: delete_measured
-- Remove the measured tasks, keep the filler rows.
DELETE FROM queued_tasks WHERE name <> 'bench_filler'

-- name: insert_filler
-- Finished rows that a busy table accumulates (pruning keeps a week of them).
INSERT INTO queued_tasks (id, name, state, date_started, date_done, result, args, kwargs)
SELECT gen_random_uuid(), 'bench_filler', 'completed', now(), now(), 'null', '[]', '{}'
FROM generate_series(1, %(count)s)

-- name: vacuum_analyze
-- Settle the table after bulk changes.
VACUUM ANALYZE queued_tasks

-- name: connections
-- Sessions on this database other than ours.
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()

-- name: statement_starts
-- When each other session on this database started its latest statement.
SELECT pid, query_start FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND query_start IS NOT NULL

-- name: transactions
-- Transactions committed or rolled back in this database so far.
SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()

-- name: clear_snapshot
-- Read fresh statistics in the next query.
SELECT pg_stat_clear_snapshot()

-- name: server_version
-- For the report.
SHOW server_version


-- name: steady_sample
-- The steady-load scenario's sample of the task table: row versions, updates, sizes.
SELECT (SELECT count(*) FROM queued_tasks WHERE state = 'completed') AS completed,
       (SELECT count(*) FROM queued_tasks WHERE state IN ('enqueued', 'picked_up', 'running'))
           AS unfinished,
       n_live_tup AS live, n_dead_tup AS dead, n_tup_upd AS updates, n_tup_hot_upd AS hot_updates,
       coalesce(autovacuum_count, 0) AS autovacuums,
       pg_relation_size('queued_tasks') / 1024 AS table_kb,
       pg_indexes_size('queued_tasks') / 1024 AS indexes_kb
FROM pg_stat_user_tables WHERE relname = 'queued_tasks'

-- name: steady_pickup
-- Pickup latency of the steady-load tasks enqueued since %(since)s (insert -> the task
-- function's own start stamp).
SELECT count(*), percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (
    ORDER BY (result::float8 - extract(epoch FROM date_enqueued)) * 1000)
FROM queued_tasks
WHERE state = 'completed' AND name = 'bench_tasks:stamp_sleep' AND date_enqueued >= %(since)s

-- name: hold_snapshot
-- The long-transaction stress: a repeatable-read transaction that has read the task table and
-- then sits idle in transaction, holding back the xmin horizon (no dead row can be removed).
SELECT count(*) FROM queued_tasks

-- name: autovacuum_setting
-- Whether the server runs autovacuum at all.
SHOW autovacuum

-- name: flow_limit_other
-- A limit on a queue no drain uses (flow scenario).
INSERT INTO queued_task_queues (queue, file_concurrency) VALUES ('other', 1)
ON CONFLICT (queue) DO UPDATE SET file_concurrency = 1

-- name: flow_clear_limits
-- No pause or limit anywhere.
TRUNCATE queued_task_queues, queued_task_starts

-- name: flow_first_start
-- When the first task of the rate-limited queue started (epoch seconds).
SELECT extract(epoch FROM min(date_started))::float8 FROM queued_tasks
WHERE queue = 'rated' AND state = 'completed'

-- name: flow_starts
-- Starts of the rate-limited queue's tasks, in order (epoch seconds).
SELECT extract(epoch FROM date_started)::float8 FROM queued_tasks
WHERE queue = 'rated' AND state = 'completed' ORDER BY 1

-- name: workflow_results
-- The results of a workflow's steps (the chain scenario's steps return their start time).
SELECT id, result FROM queued_tasks WHERE workflow_id = %(id)s

-- name: retention_sample
-- The retention scenario's sample: rows kept, dead row versions, sizes of everything that grows.
SELECT (SELECT count(*) FROM queued_tasks) AS rows, n_dead_tup AS dead,
       coalesce(autovacuum_count, 0) AS autovacuums,
       pg_relation_size('queued_tasks') / 1024 AS table_kb,
       pg_indexes_size('queued_tasks') / 1024 AS indexes_kb,
       pg_total_relation_size('queued_task_logs') / 1024 AS logs_kb
FROM pg_stat_user_tables WHERE relname = 'queued_tasks'

-- name: retention_pickups
-- Start stamp and enqueue time (epoch seconds) of the tasks completed in a window.
SELECT result::float8, extract(epoch FROM date_enqueued)::float8 FROM queued_tasks
WHERE state = 'completed' AND date_done > %(since)s AND date_done <= %(until)s

-- name: pruner_active
-- Whether a pruner of this database runs a statement now.
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'qsup-pruner-%' AND state = 'active'

-- name: producer_bare_insert
-- The producers scenario's floor: the row insert_plain_task writes, without NOTIFY or checks.
INSERT INTO queued_tasks (id, name, state, queue, priority, args, kwargs, max_retries, timeout)
VALUES (gen_random_uuid(), 'bench_tasks:noop', 'enqueued', 'default', 0, '[]', '{}', 3, NULL)

-- name: bigtable_finished
-- The bigtable scenario's finished tasks (streamed into COPY ... FROM STDIN): over the last
-- day, 97 %% completed, 2.5 %% failed, 0.5 %% cancelled, in three queues and five task names.
COPY (
    SELECT gen_random_uuid(), 'bench.task_' || (i %% 5),
           CASE WHEN i %% 200 = 0 THEN 'cancelled' WHEN i %% 40 = 1 THEN 'failed'
                ELSE 'completed' END,
           (ARRAY['default', 'default', 'emails', 'default', 'emails', 'default', 'emails',
                  'default', 'emails', 'reports'])[i / 7 %% 10 + 1],
           done - interval '120 ms', done - interval '20 ms', done,
           done - interval '120 ms', 1, 'null'
    FROM generate_series(1, %(count)s) AS i,
         LATERAL (SELECT now() - make_interval(secs => (i %% 86400) + (i %% 997) / 1000.0)) AS d (done)
) TO STDOUT

-- name: bigtable_waiting
-- The bigtable scenario's due tasks waiting in two queues (queues no server takes).
COPY (
    SELECT gen_random_uuid(), 'bench.task_' || (i %% 5), 'enqueued',
           (ARRAY['default', 'emails'])[i %% 2 + 1],
           now() - make_interval(secs => i / 1000.0), NULL, NULL,
           now() - make_interval(secs => i / 1000.0), 0, NULL
    FROM generate_series(1, %(count)s) AS i
) TO STDOUT

-- name: bigtable_copy
-- Where the two above go.
COPY queued_tasks (id, name, state, queue, date_enqueued, date_started, date_done, scheduled_at,
                   attempts, result) FROM STDIN

-- name: bigtable_series
-- A day of the per-minute series (migration 0014) for the same queues and names, when the
-- table exists: what servers would have written while finishing the tasks above.
INSERT INTO queued_task_minutes (minute, queue, name, completed, failed, retried, run_seconds,
                                 wait_seconds, run_buckets, wait_buckets, cpu_buckets)
SELECT m, q, 'bench.task_' || n, 40, 1, 1, 4.1, 41.0,
       array_fill(0, ARRAY[6]) || 41 || array_fill(0, ARRAY[40]),
       array_fill(0, ARRAY[20]) || 41 || array_fill(0, ARRAY[26]), array_fill(0, ARRAY[47])
FROM generate_series(date_trunc('minute', now() - interval '1 day'), now(), interval '1 minute') AS m,
     unnest(ARRAY['default', 'emails', 'reports']) AS q, generate_series(0, 4) AS n

-- name: has_series
-- Whether this checkout's schema has the series table.
SELECT to_regclass('queued_task_minutes') IS NOT NULL

