-- Workflows (qsup.workflow_store): enqueue in one statement, unwind after a failure, read.

-- name: insert_workflow
-- Write a whole workflow: its row, every step's task row, its place in the workflow and the
-- edges between steps, in one statement (a 10,000-member group is one round trip); wakes
-- servers on commit for the steps enqueued at once. The documents are built by
-- qsup.workflow.compile_workflow. Foreign keys are checked at the end of the statement, when
-- every row is in.
WITH wf AS (
    INSERT INTO queued_workflows (id, label, output, parent_task, unique_key, step_count)
    VALUES (%(id)s, %(label)s, %(output)s::jsonb, %(parent)s::uuid, %(unique_key)s,
            jsonb_array_length(%(tasks)s::jsonb))
    RETURNING id
), tasks AS (
    INSERT INTO queued_tasks (id, name, state, parent_task, queue, priority, args, kwargs,
                              scheduled_at, max_retries, timeout, unique_key, workflow_id,
                              workflow_inputs)
    SELECT r.id, r.name, r.state, r.parent, r.queue, r.priority, r.args::jsonb, r.kwargs::jsonb,
           coalesce(r.eta, now()) + make_interval(secs => r.delay), r.max_retries, r.timeout,
           r.unique_key, wf.id, r.inputs
    FROM wf, jsonb_to_recordset(%(tasks)s::jsonb) AS r (
        id uuid, name text, state text, parent uuid, queue text, priority int, args text,
        kwargs text, delay float8, eta timestamptz, max_retries int, timeout float8,
        unique_key text, inputs jsonb)
    RETURNING id
), steps AS (
    INSERT INTO queued_workflow_steps (task_id, workflow_id, position, path, terminal,
                                       compensation)
    SELECT s.task_id, wf.id, s.position, s.path, s.terminal, s.compensation
    FROM wf, jsonb_to_recordset(%(steps)s::jsonb) AS s (
        task_id uuid, position int, path text, terminal boolean, compensation jsonb)
), edges AS (
    INSERT INTO queued_task_dependencies (task_id, depends_on, tolerant)
    SELECT e.task_id, e.depends_on, e.tolerant
    FROM jsonb_to_recordset(%(edges)s::jsonb) AS e (task_id uuid, depends_on uuid,
                                                    tolerant boolean)
)
SELECT (SELECT count(*) FROM tasks),
       (SELECT count(pg_notify(%(channel)s, q)) FROM unnest(%(queues)s::text[]) AS q
        WHERE %(channel)s::text IS NOT NULL)

-- name: workflow_lock_key
-- Serialise enqueues of workflows with the same unique key until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended(%(unique_key)s, 7153))

-- name: workflow_find_unfinished_by_key
-- The unfinished workflow holding a unique key (running, with a step not finished), and its
-- steps' ids in the order written.
SELECT w.id, array_agg(s.task_id ORDER BY s.position)
FROM queued_workflows w JOIN queued_workflow_steps s ON s.workflow_id = w.id
WHERE w.unique_key = %(unique_key)s AND w.state = 'running' AND s.compensates IS NULL
GROUP BY w.id
HAVING bool_or((SELECT q.state FROM queued_tasks q WHERE q.id = s.task_id)
               IN ('waiting', 'enqueued', 'picked_up', 'running'))
LIMIT 1

-- name: workflow_after_failure
-- After tasks failed or were cancelled (%(ids)s: the failed ones first, then the dependents
-- cancelled in cascade): release the steps waiting tolerantly whose inputs have all finished
-- (rows 'wake', queue), and mark failed (%(state)s) the running workflows whose end steps are
-- among these (rows 'workflow', id). The mark is the exactly-once gate: it moves a workflow
-- from running once, in the transaction that then enqueues its compensations.
WITH given AS (
    SELECT i.id, i.n FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS i (id, n)
), tolerant AS (
    SELECT DISTINCT d.task_id FROM queued_task_dependencies d
    WHERE d.depends_on = ANY(%(ids)s::uuid[]) AND d.tolerant
), released AS (
    UPDATE queued_tasks w SET state = 'enqueued', scheduled_at = now()
    FROM (SELECT task.ctid AS tid FROM tolerant,
          LATERAL (SELECT ctid FROM queued_tasks q WHERE q.id = tolerant.task_id OFFSET 0) AS task
    ) AS c
    WHERE w.ctid = c.tid AND w.state = 'waiting'
      AND NOT EXISTS (
          SELECT 1 FROM queued_task_dependencies d
          WHERE d.task_id = w.id
            AND (SELECT p.state FROM queued_tasks p WHERE p.id = d.depends_on) <> ALL (
                CASE WHEN d.tolerant THEN '{completed,failed,cancelled}'::text[]
                     ELSE '{completed}'::text[] END))
    RETURNING w.queue
), placed AS (
    SELECT s.workflow_id, s.terminal, given.id, given.n
    FROM given, LATERAL (SELECT workflow_id, terminal FROM queued_workflow_steps s
                         WHERE s.task_id = given.id OFFSET 0) AS s
), cause AS (
    SELECT DISTINCT ON (workflow_id) workflow_id, id FROM placed ORDER BY workflow_id, n
), marked AS (
    UPDATE queued_workflows w
    SET state = %(state)s, date_done = now(), failed_task = cause.id,
        error_message = (SELECT coalesce(t.error_message, t.state) FROM queued_tasks t
                         WHERE t.id = cause.id)
    FROM cause
    WHERE w.id = cause.workflow_id AND w.state = 'running'
      AND cause.workflow_id IN (SELECT workflow_id FROM placed WHERE terminal)
    RETURNING w.id
)
SELECT 'wake', queue FROM released
UNION ALL
SELECT 'workflow', id::text FROM marked

-- name: workflow_mark_cancelled
-- An operator cancels a running workflow (the same gate as workflow_after_failure).
UPDATE queued_workflows
SET state = 'cancelled', date_done = now(), error_message = %(reason)s
WHERE id = %(id)s AND state = 'running'
RETURNING id

-- name: workflow_stop_rest
-- The rest of failed workflows stops: unstarted steps are cancelled with the reason, running
-- ones asked to stop (their server cancels them). Compensations are left alone. Returns (id,
-- true) for each step cancelled, (id, false) for each asked to stop.
-- The steps are found through their own table, each task by a primary-key probe, and
-- updated by ctid (as in complete_batch: a plan cached while the table was empty would read
-- all of queued_tasks for "workflow_id = ANY(...)").
WITH rest AS (
    SELECT t.tid FROM queued_workflow_steps s,
    LATERAL (SELECT ctid AS tid, state FROM queued_tasks q WHERE q.id = s.task_id OFFSET 0) AS t
    WHERE s.workflow_id = ANY(%(workflows)s::uuid[]) AND s.compensates IS NULL
      AND t.state IN ('waiting', 'enqueued', 'picked_up', 'running')
), cancelled AS (
    UPDATE queued_tasks t
    SET state = 'cancelled', date_done = now(), error_message = %(reason)s
    FROM rest WHERE t.ctid = rest.tid AND t.state IN ('waiting', 'enqueued')
    RETURNING t.id
), requested AS (
    UPDATE queued_tasks t SET cancel_requested = true
    FROM rest WHERE t.ctid = rest.tid AND t.state IN ('picked_up', 'running')
    RETURNING t.id
), logged AS (
    INSERT INTO queued_task_logs (queued_task_id, type, message)
    SELECT id, 'cancelled', %(reason)s FROM cancelled
    UNION ALL
    SELECT id, 'cancel_requested', %(reason)s FROM requested
)
SELECT id, true FROM cancelled
UNION ALL
SELECT id, false FROM requested

-- name: workflow_compensate
-- Enqueue the compensations of the completed steps of these failed workflows, newest first:
-- the newest at once, each other one after the one before it (a tolerant dependency: a
-- compensation that fails does not stop the next). Their rows have the ids chosen at enqueue,
-- so a repeat inserts nothing. Returns the queues woken.
WITH done AS (
    SELECT s.task_id, s.workflow_id, s.position, s.path, s.compensation AS c, t.date_done
    FROM queued_workflow_steps s,
    LATERAL (SELECT state, date_done FROM queued_tasks q WHERE q.id = s.task_id OFFSET 0) AS t
    WHERE s.workflow_id = ANY(%(workflows)s::uuid[]) AND s.compensation IS NOT NULL
      AND t.state = 'completed'
), ordered AS (
    SELECT (c ->> 'id')::uuid AS id, c, task_id, workflow_id, position, path,
           lag((c ->> 'id')::uuid) OVER (PARTITION BY workflow_id
                                         ORDER BY date_done DESC, position DESC) AS after
    FROM done
), ins AS (
    INSERT INTO queued_tasks (id, name, state, queue, priority, args, kwargs, max_retries,
                              timeout, workflow_id)
    SELECT id, c ->> 'name', CASE WHEN after IS NULL THEN 'enqueued' ELSE 'waiting' END,
           c ->> 'queue', (c ->> 'priority')::int, (c ->> 'args')::jsonb,
           (c ->> 'kwargs')::jsonb, (c ->> 'max_retries')::int, (c ->> 'timeout')::float8,
           workflow_id
    FROM ordered
    ON CONFLICT (id) DO NOTHING
    RETURNING id, state, queue
), steps AS (
    INSERT INTO queued_workflow_steps (task_id, workflow_id, position, path, compensates)
    SELECT o.id, o.workflow_id, o.position, o.path || '.undo', o.task_id
    FROM ordered o JOIN ins ON ins.id = o.id
), edges AS (
    INSERT INTO queued_task_dependencies (task_id, depends_on, tolerant)
    SELECT o.id, o.after, true FROM ordered o JOIN ins ON ins.id = o.id WHERE o.after IS NOT NULL
)
SELECT DISTINCT queue FROM ins WHERE state = 'enqueued'

-- name: workflow_of_task
-- The workflow a task belongs to (NULL for a plain task).
SELECT workflow_id FROM queued_tasks WHERE id = %(id)s

-- name: workflow_row
-- One workflow.
SELECT id, label, state, output, parent_task, unique_key, step_count, date_created, date_done,
       failed_task, error_message
FROM queued_workflows WHERE id = %(id)s

-- name: workflow_steps
-- A workflow's steps (compensations after the step they undo), with their task rows.
SELECT s.task_id, s.path, s.terminal, s.compensates, t.name, t.state, t.queue, t.attempts,
       t.date_enqueued, t.date_started, t.date_done, t.error_message,
       extract(epoch FROM t.date_done - t.date_started)::float8 AS duration, t.progress
FROM queued_workflow_steps s,
LATERAL (SELECT * FROM queued_tasks q WHERE q.id = s.task_id OFFSET 0) AS t  -- by primary key
WHERE s.workflow_id = %(id)s
ORDER BY s.position, s.compensates IS NOT NULL

-- name: workflow_outcome
-- What a waiting caller needs: the workflow's state, the failed step (id, name, error), and
-- the rows of the steps its result is made of.
SELECT w.state, w.failed_task, f.name, w.error_message,
       (SELECT jsonb_object_agg(p.id, jsonb_build_array(p.state, p.result, p.error_message))
        FROM jsonb_array_elements_text(%(ids)s::jsonb) AS i (id),
        LATERAL (SELECT id, state, result, error_message FROM queued_tasks q
                 WHERE q.id = i.id::uuid OFFSET 0) AS p)
FROM queued_workflows w LEFT JOIN queued_tasks f ON f.id = w.failed_task
WHERE w.id = %(id)s

-- name: prune_workflows
-- Delete workflows older than the TTL that have no step left (prune_tasks_batch removed them).
DELETE FROM queued_workflows
WHERE id IN (
    SELECT w.id FROM queued_workflows w
    WHERE w.date_created < now() - make_interval(secs => %(ttl)s)
      AND NOT EXISTS (SELECT 1 FROM queued_workflow_steps s WHERE s.workflow_id = w.id)
    LIMIT %(limit)s)
