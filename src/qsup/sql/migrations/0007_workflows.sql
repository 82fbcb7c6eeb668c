-- qsup schema, version 7: workflows (chains, groups, sagas) on top of the task rows.
--
-- Every step is an ordinary queued_tasks row with a workflow_id, waiting on its inputs through
-- queued_task_dependencies. A step fed by earlier results carries workflow_inputs: which tasks'
-- results it takes and how they are shaped; the claim reads those results then (plain tasks
-- have NULL there and pay one NULL test). The rest of a step's facts live beside the task row,
-- so the hot table stays as narrow as it was, and gets no new index (a workflow's steps are
-- found through queued_workflow_steps): plain tasks' claims and completions write no more.
ALTER TABLE queued_tasks ADD COLUMN workflow_id uuid, ADD COLUMN workflow_inputs jsonb;

-- A tolerant dependency (group(...).then(s, allow_failures=True), and the compensations'
-- order) releases its task when the dependency has finished in any way, and never cancels it.
ALTER TABLE queued_task_dependencies ADD COLUMN tolerant boolean NOT NULL DEFAULT false;

-- One row per workflow. state moves once, from running to failed or cancelled, in the
-- transaction that records the failure and enqueues the compensations: that single update is
-- what makes each compensation run once, whichever server sees the failure, after any crash.
-- A workflow that completes stays 'running' here; readers derive "completed" from its steps.
CREATE TABLE queued_workflows (
    id uuid PRIMARY KEY,
    label text NOT NULL,
    state varchar(50) NOT NULL DEFAULT 'running',
    output jsonb NOT NULL,  -- which steps' results make the workflow's result (see inputs)
    parent_task uuid REFERENCES queued_tasks (id) ON DELETE SET NULL,
    unique_key text,
    step_count integer NOT NULL,
    date_created timestamptz NOT NULL DEFAULT now(),
    date_done timestamptz,
    failed_task uuid,
    error_message text,
    CONSTRAINT queued_workflows_state_check CHECK (state IN ('running', 'failed', 'cancelled'))
);
CREATE INDEX idx_queued_workflows_unique_key ON queued_workflows (unique_key)
    WHERE unique_key IS NOT NULL;
-- Deleting a task (pruning, queue clear) looks here for workflows it started (ON DELETE SET
-- NULL): by index, not by a scan per deleted task.
CREATE INDEX idx_queued_workflows_parent ON queued_workflows (parent_task)
    WHERE parent_task IS NOT NULL;
-- Pruning finds the old workflows.
CREATE INDEX idx_queued_workflows_created ON queued_workflows (date_created);

-- A step's place in its workflow: its path in the tree ("0", "1.2", "1.then"), whether it ends
-- the workflow (terminal: nothing in the workflow waits on it), and its compensation, a task
-- to be (its row written only if the workflow fails after this step completed) or, for a
-- compensation's own row, the step it undoes.
CREATE TABLE queued_workflow_steps (
    task_id uuid PRIMARY KEY REFERENCES queued_tasks (id) ON DELETE CASCADE,
    workflow_id uuid NOT NULL REFERENCES queued_workflows (id) ON DELETE CASCADE,
    position integer NOT NULL,
    path text NOT NULL,
    terminal boolean NOT NULL DEFAULT false,
    compensation jsonb,
    compensates uuid
);
CREATE INDEX idx_queued_workflow_steps_workflow ON queued_workflow_steps (workflow_id, position);
