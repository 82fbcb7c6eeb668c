-- qsup schema, version 6: vacuum the task table by a count of dead rows, not a share of it.
--
-- Each task leaves two dead row versions (the claim and the completion; a third, the start,
-- only for tasks that run longer than the outbox's STARTS_AFTER), and neither update can be HOT:
-- both change the state (indexed by the seed's idx_queued_tasks_state) and the completion sets
-- date_done (idx_queued_tasks_done). Measured: a drain of 20,000 tasks made 40,000 updates, 0
-- HOT; the heap grew from 4.0 to 9.2 MB and the indexes from 1.9 to 3.8 MB until a vacuum.
-- The 2 % of 0001 scales with the finished rows kept for the result TTL: a week of tasks at
-- 100/s is 60 million rows, so 1.2 million dead ones before a vacuum, at 2,000/s 24 million.
-- A fixed 20,000 (5 s of dead rows at 2,000/s, under 2 minutes at 100/s) leaves the launcher's
-- nap (autovacuum_naptime, 60 s by default) as the bound: about 250,000 dead rows at 2,000/s,
-- whatever the table's size. The vacuum reads mostly the recently written pages (the
-- visibility map skips the rest), so it runs unthrottled: with the default 2 ms cost delay
-- dead rows would pile up while it sleeps. Statistics stay on 2 %: no hot statement's plan
-- depends on them (tests/integration/test_plans.py).
ALTER TABLE queued_tasks SET (autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000, autovacuum_vacuum_cost_delay = 0);
