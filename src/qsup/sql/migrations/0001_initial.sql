-- qsup schema, version 1. Table and column names follow the seed (FastEdgy queued tasks) so its
-- monitoring SQL runs unchanged; the extra columns are what claiming, retries and scheduling need.

CREATE TABLE queued_task_workers (
    id serial PRIMARY KEY,
    server_name varchar(255) NOT NULL,
    max_workers integer NOT NULL DEFAULT 0,
    active_workers integer NOT NULL DEFAULT 0,
    idle_workers integer NOT NULL DEFAULT 0,
    is_running boolean NOT NULL DEFAULT true,
    last_heartbeat timestamptz NOT NULL DEFAULT now(),
    hostname varchar(255),
    pid integer,
    queues text[] NOT NULL DEFAULT '{}',
    date_started timestamptz NOT NULL DEFAULT now(),
    date_stopped timestamptz
);

CREATE TABLE queued_tasks (
    id uuid PRIMARY KEY,
    name varchar(255) NOT NULL,
    state varchar(50) NOT NULL DEFAULT 'enqueued',
    parent_task uuid REFERENCES queued_tasks (id) ON DELETE SET NULL,
    date_enqueued timestamptz NOT NULL DEFAULT now(),
    date_started timestamptz,
    date_done timestamptz,
    context jsonb NOT NULL DEFAULT '{}',
    result jsonb,
    error_message text,
    queue varchar(255) NOT NULL DEFAULT 'default',
    priority integer NOT NULL DEFAULT 0,
    args jsonb NOT NULL DEFAULT '[]',
    kwargs jsonb NOT NULL DEFAULT '{}',
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    max_retries integer NOT NULL DEFAULT 3,
    timeout double precision,
    unique_key text,
    server_id integer REFERENCES queued_task_workers (id) ON DELETE SET NULL,
    worker_pid integer,
    cancel_requested boolean NOT NULL DEFAULT false,
    CONSTRAINT queued_tasks_state_check CHECK (state IN
        ('waiting', 'enqueued', 'picked_up', 'running', 'completed', 'failed', 'cancelled'))
);

-- The seed's indexes.
CREATE INDEX idx_queued_tasks_state ON queued_tasks (state);
CREATE INDEX idx_queued_tasks_date_enqueued ON queued_tasks (date_enqueued);
CREATE INDEX idx_queued_tasks_parent ON queued_tasks (parent_task);

-- The claim reads only ready rows: this partial index keeps it an index scan however many
-- finished rows the table holds.
CREATE INDEX idx_queued_tasks_claim ON queued_tasks (priority DESC, scheduled_at, id)
    WHERE state = 'enqueued';

-- Rescue of tasks held by a dead server.
CREATE INDEX idx_queued_tasks_server ON queued_tasks (server_id)
    WHERE state IN ('picked_up', 'running');

-- One unfinished task per unique key, enforced by the database.
CREATE UNIQUE INDEX idx_queued_tasks_unique_key ON queued_tasks (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('waiting', 'enqueued', 'picked_up', 'running');

-- Pruning of finished tasks.
CREATE INDEX idx_queued_tasks_done ON queued_tasks (date_done) WHERE date_done IS NOT NULL;

-- Hot-path table: leave room for HOT updates and vacuum it early.
ALTER TABLE queued_tasks SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02);

CREATE TABLE queued_task_dependencies (
    task_id uuid NOT NULL REFERENCES queued_tasks (id) ON DELETE CASCADE,
    depends_on uuid NOT NULL REFERENCES queued_tasks (id) ON DELETE CASCADE,
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX idx_queued_task_dependencies_depends_on ON queued_task_dependencies (depends_on);

CREATE TABLE queued_task_logs (
    id serial PRIMARY KEY,
    queued_task_id uuid REFERENCES queued_tasks (id) ON DELETE CASCADE,
    type varchar(50) NOT NULL DEFAULT 'info',
    message text,
    date_created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_queued_task_logs_task ON queued_task_logs (queued_task_id);

CREATE TABLE queued_task_schedules (
    name varchar(255) PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    last_fire timestamptz,
    next_fire timestamptz
);

-- The earliest due delayed task, so an idle server sleeps exactly until then.
CREATE INDEX idx_queued_tasks_due ON queued_tasks (scheduled_at) WHERE state = 'enqueued';
