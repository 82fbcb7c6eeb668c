-- qsup schema, version 12: a dead server's tasks are charged an attempt only if they started.
--
-- orphaned: how many times a server died holding the task before its start was written (its
-- row still picked_up). Such a rescue gives the attempt back, so a task that kills its server
-- faster than its start is written (starts are written in batches, after 0.1 s) would be
-- rescued for free forever; once it has been orphaned QUEUE_MAX_CRASHES times the next rescue
-- quarantines it instead (rescue_orphans). A manual retry resets it, as it resets crashes.
ALTER TABLE queued_tasks ADD COLUMN orphaned integer NOT NULL DEFAULT 0;
