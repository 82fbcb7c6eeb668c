-- qsup schema, version 4: a sequence counts every task ever enqueued (a monotonic counter for
-- /metrics that pruning cannot lower; sequences are cheap and outside transactions).
CREATE SEQUENCE queued_tasks_enqueued_seq;
ALTER TABLE queued_tasks ADD COLUMN seq bigint DEFAULT nextval('queued_tasks_enqueued_seq');
ALTER SEQUENCE queued_tasks_enqueued_seq OWNED BY queued_tasks.seq;
