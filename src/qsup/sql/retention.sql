-- Retention (SPEC §15): finished tasks older than the TTL leave in bounded batches, on the
-- pruner's own connection (supervisor/retention.py), one server at a time.

-- name: prune_tasks_batch
-- Delete up to %(limit)s finished tasks older than the TTL, oldest first, and with them (by
-- cascade, each by index) their logs, dependency rows and workflow step rows. Rows another
-- transaction holds are skipped (SKIP LOCKED): a claim never locks a finished task, so none
-- waits for this. One server at a time (the transaction's advisory lock; a server that does
-- not get it deletes nothing and sleeps). Returns how many went, whether this server had the
-- turn, and the seconds until the oldest finished task left passes the TTL (NULL: none left).
WITH turn AS (SELECT pg_try_advisory_xact_lock(%(key)s) AS mine),
gone AS (
    DELETE FROM queued_tasks t
    WHERE t.id IN (
        SELECT q.id FROM queued_tasks q
        WHERE (SELECT mine FROM turn)  -- a one-time filter: without the turn, no scan at all
          AND q.date_done < now() - make_interval(secs => %(ttl)s)
          AND q.state IN ('completed', 'failed', 'cancelled')
        ORDER BY q.date_done
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT mine FROM turn),
       extract(epoch FROM (
           SELECT q.date_done FROM queued_tasks q
           WHERE q.date_done >= now() - make_interval(secs => %(ttl)s)
             AND q.state IN ('completed', 'failed', 'cancelled')
           ORDER BY q.date_done LIMIT 1) + make_interval(secs => %(ttl)s) - now())

-- name: prune_starts
-- Delete the start log rows of rate-limited queues (queued_task_starts) that no claim will
-- read again: older than the queue's window (see functions/claim_limited.sql) or, when the
-- queue has no rate limit now, older than the TTL. A limited claim deletes its own queue's old
-- starts; this catches the queues that are no longer claimed or limited.
DELETE FROM queued_task_starts s
WHERE s.ctid = ANY(ARRAY(
    SELECT o.ctid FROM queued_task_starts o
    LEFT JOIN queued_task_queues c ON c.queue = o.queue
    WHERE o.at < now() - make_interval(secs => coalesce(
        coalesce(c.period, c.file_period) + least(0.1, 0.02 * coalesce(c.period, c.file_period)),
        %(ttl)s))
    LIMIT %(limit)s))
