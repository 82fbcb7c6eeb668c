-- qsup schema, version 5: every claim and completion is a non-HOT update (the state changes),
-- so it inserts into each index whose predicate the new row version matches. Completed tasks,
-- by far the most numerous, leave the state index (counts by state scan the table anyway; the
-- other states stay indexed for the monitoring queries and the rescue), and the server index
-- goes: the few held tasks are found through the state index. Measured with the raw
-- claim/complete loop: about +30 % rows per second.
DROP INDEX IF EXISTS idx_queued_tasks_state;
CREATE INDEX idx_queued_tasks_state ON queued_tasks (state) WHERE state <> 'completed';
DROP INDEX IF EXISTS idx_queued_tasks_server;
-- The foreign key from queued_tasks.server_id made every claimed row check (and share-lock) its
-- server's row: about 7 us per row, and lock traffic on one row for all claims. The rescue
-- treats a task whose server row is gone like one whose server died.
ALTER TABLE queued_tasks DROP CONSTRAINT IF EXISTS queued_tasks_server_id_fkey;
