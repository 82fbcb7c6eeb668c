-- qsup schema, version 2: every claim and completion inserts into each index whose predicate
-- the new row version matches. Most tasks have no parent: index only those that do.
DROP INDEX IF EXISTS idx_queued_tasks_parent;
CREATE INDEX idx_queued_tasks_parent ON queued_tasks (parent_task) WHERE parent_task IS NOT NULL;
