-- Producers' coalesced wake-ups (wakeups.py).

-- name: notify_queues
-- Wake servers for each queue of %(queues)s, in a transaction that does not wait for its WAL
-- flush (synchronous_commit off for this transaction only): notifying commits are serialised
-- cluster-wide, so this one holds that lock for microseconds, not a disk flush. A wake-up is a
-- hint: lost in a crash, the servers' fallback poll finds the tasks.
SELECT set_config('synchronous_commit', 'off', true), count(pg_notify(%(channel)s, q))
FROM unnest(%(queues)s::text[]) AS q
