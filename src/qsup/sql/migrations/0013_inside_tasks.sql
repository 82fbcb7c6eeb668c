-- qsup schema, version 13: what a running task reports about itself, and what an operator
-- asks of it.
--
-- progress: the latest current_task.progress() of the task ({"fraction", "message", "data",
-- "at"}), written at most once a second while it runs and kept after it ends.
-- queued_task_probes: an operator's request to look inside a running task (`qsup task stack`,
-- `task show`, the API), one row per task: the request's time, and the answer its server
-- wrote (the worker's stack, the CPU seconds and RSS so far, how long it had run). No foreign
-- key: deleting finished tasks must not pay a lookup here; old rows go with each new request.
ALTER TABLE queued_tasks ADD COLUMN progress jsonb;
CREATE TABLE queued_task_probes (
    task_id uuid PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    answered_at timestamptz,
    stack text,
    cpu_seconds float8,
    rss_bytes bigint,
    running_seconds float8
);
