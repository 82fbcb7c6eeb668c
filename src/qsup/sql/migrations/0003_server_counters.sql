-- qsup schema, version 3: each server's running totals (tasks completed, failed, retried,
-- claimed; worker recycles and crashes by reason), written by its heartbeat, so /metrics can
-- serve real counters from any process.
ALTER TABLE queued_task_workers ADD COLUMN counters jsonb NOT NULL DEFAULT '{}';
