-- qsup schema, version 11: what each server declared (its file's [limits], its schedules) is
-- in the database, so that a fleet is seen and steered from the database URL alone and no
-- server silently overrides what another one put in force.
--
-- file_source: where the file limits in force came from (the server and file that first gave
-- the queue limits, or the `qsup queue limits --apply` that replaced them). A server's file
-- changes what is in force only for a queue that has no file limits yet; otherwise a
-- difference is a WARNING and shows in `qsup queue limits` (see flow_store.declare_file_limits).
ALTER TABLE queued_task_queues ADD COLUMN file_source text;

-- The [limits] of each server's configuration file as it declared them at start and on
-- SIGHUP: {"source": "file PATH", "queues": {QUEUE: {concurrency, rate, period,
-- key_concurrency}}}; NULL: its file has no [limits.QUEUE] table.
ALTER TABLE queued_task_workers ADD COLUMN file_limits jsonb;

-- A schedule as the server that last declared it (at date_declared) runs it: its definition,
-- and the task it enqueues as that server builds it (template: the row's name, args, kwargs,
-- queue, priority, max_retries, timeout, concurrency_key), so that `qsup schedule run NAME`
-- needs neither the configuration nor the task's code. server_ids: the servers that declare
-- it, running or stopped less than a day ago (see schedule_store.KEEP_STOPPED).
ALTER TABLE queued_task_schedules
    ADD COLUMN cron text,
    ADD COLUMN timezone text,
    ADD COLUMN task text,
    ADD COLUMN queue text,
    ADD COLUMN on_missed text,
    ADD COLUMN template jsonb,
    ADD COLUMN server_ids integer[] NOT NULL DEFAULT '{}',
    ADD COLUMN date_declared timestamptz;
