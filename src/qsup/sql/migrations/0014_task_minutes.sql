-- qsup schema, version 14: a per-minute series of outcomes that servers write, so reads stay
-- cheap however many finished tasks the table keeps.
--
-- Statistics (throughput, run time and pickup latency percentiles, cost by task name) were
-- computed at each read from up to 50,000 task rows: a /metrics scrape or a dashboard refresh
-- read and binned them all, and counting by state read the whole table (5,000,000 finished
-- rows: seconds). Each server's writer now adds its flush's outcomes to one row per minute,
-- queue and task name (one upsert per flush, in the flush's transaction); reads sum a few
-- rows. Digests are counts in fixed log-scale buckets (bucket i holds seconds up to
-- 0.001 * 2^(i/2), the last one everything above about 99 minutes), so rows of many servers
-- and minutes add up element by element and still give p50/p95 within a bucket (±19 %).
-- Rows older than the result TTL are pruned like the tasks (series_prune).
CREATE TABLE queued_task_minutes (
    minute timestamptz NOT NULL,
    queue varchar(255) NOT NULL,
    name varchar(255) NOT NULL,
    completed integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    retried integer NOT NULL DEFAULT 0,
    run_seconds float8 NOT NULL DEFAULT 0,  -- sum over the finished tasks with a start
    wait_seconds float8 NOT NULL DEFAULT 0,  -- sum of due -> started over the same
    run_buckets integer[] NOT NULL,  -- 47 log-scale buckets (above)
    wait_buckets integer[] NOT NULL,
    measured integer NOT NULL DEFAULT 0,  -- attempts with accounting (CPU, memory)
    cpu_seconds float8 NOT NULL DEFAULT 0,  -- sum
    cpu_buckets integer[] NOT NULL,  -- CPU seconds per measured attempt, same buckets
    peak_memory_bytes bigint,  -- highest
    memory_growth_bytes bigint NOT NULL DEFAULT 0,  -- sum
    PRIMARY KEY (minute, queue, name)
);


-- Counting by state and queue (qsup.counts, the task list's state and queue filters) read
-- every row's heap tuple for its queue: 10,000 failed tasks spread over a table of 1,000,000
-- took 110 ms of random reads. With the queue in the state index they are an index-only scan.
-- The index keeps its name (the seed's monitoring SQL and its "WHERE state = ..." use it as
-- before) and its cost on the hot path: (state, queue) pairs are few, so deduplication keeps
-- it about as small as the state alone. The statistics of the pair let the planner see that
-- a queue's failed tasks are rare (a task list filtered by both then reads this index instead
-- of walking the whole table newest first).
DROP INDEX IF EXISTS idx_queued_tasks_state;
CREATE INDEX idx_queued_tasks_state ON queued_tasks (state, queue);
CREATE STATISTICS IF NOT EXISTS queued_tasks_state_queue (mcv, dependencies)
    ON state, queue FROM queued_tasks;
