-- qsup schema, version 5: a claim that stays on its index whatever the statistics say, and
-- fewer writes per task.
--
-- The claim must read the claim index in its order. Statistics taken while nothing waited (a
-- burst after a quiet moment, or a table of finished tasks) made "state = 'enqueued'" look like
-- one row, and the planner then read the state index (or the due index) and sorted every
-- waiting task at each claim: 13 ms instead of 1 ms per claim of 200 behind 20,000 waiting
-- tasks. A generated column only the claim and due indexes cover takes the state index out of
-- the claim's choices; the due index keeps only delayed tasks (due ones announce themselves by
-- NOTIFY), so it cannot stand in for the claim index either. The state index stays whole: the
-- seed's monitoring queries and operators' counts by state use it.
-- It is 1 or NULL rather than a boolean: before the first ANALYZE the planner assumes half of
-- a boolean column is true (and chose a sort again), but few rows for "= 1".
ALTER TABLE queued_tasks ADD COLUMN claimable smallint
    GENERATED ALWAYS AS (CASE WHEN state = 'enqueued' THEN 1 END) STORED;
DROP INDEX IF EXISTS idx_queued_tasks_claim;
CREATE INDEX idx_queued_tasks_claim ON queued_tasks (priority DESC, scheduled_at, id)
    WHERE claimable = 1;
DROP INDEX IF EXISTS idx_queued_tasks_due;
CREATE INDEX idx_queued_tasks_due ON queued_tasks (scheduled_at)
    WHERE claimable = 1 AND scheduled_at > date_enqueued;

-- Every claim and completion is a non-HOT update (the state changes): it inserts into each
-- index whose predicate the new row version matches. The server index goes (the few held
-- tasks are found through the state index), and so does the foreign key from
-- queued_tasks.server_id, which made every claimed row check and share-lock its server's row
-- (about 7 us per row, and lock traffic on one row for all claims). The rescue treats a task
-- whose server row is gone like one whose server died.
DROP INDEX IF EXISTS idx_queued_tasks_server;
ALTER TABLE queued_tasks DROP CONSTRAINT IF EXISTS queued_tasks_server_id_fkey;
