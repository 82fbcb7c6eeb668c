-- qsup schema, version 10: what each attempt cost, what killed the workers that ran it, and
-- servers whose liveness is a session advisory lock.
--
-- cpu_seconds, peak_memory_bytes, memory_growth_bytes: the latest attempt's figures (each
-- failed attempt's also in its log row). crashes / crash_causes: the workers that died running
-- the task ("SIGKILL, MemoryLimitExceeded"), what quarantine decides on; a manual retry
-- resets them. liveness_lock: the server holds advisory lock (LIVENESS_CLASS, id) on its
-- connection; only such servers are rescued as soon as their lock is free (a server of an
-- older version holds none and is left to the heartbeat timeout).
ALTER TABLE queued_tasks
    ADD COLUMN cpu_seconds float8,
    ADD COLUMN peak_memory_bytes bigint,
    ADD COLUMN memory_growth_bytes bigint,
    ADD COLUMN crashes integer NOT NULL DEFAULT 0,
    ADD COLUMN crash_causes text;
ALTER TABLE queued_task_workers ADD COLUMN liveness_lock boolean NOT NULL DEFAULT false;
