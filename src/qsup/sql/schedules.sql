-- The fleet's schedules: what each server declared (qsup.schedule_store, migration 0011).

-- name: schedule_declare
-- A server declares its schedules (at start and on SIGHUP): each row takes the definition and
-- the task template as this server makes them, and this server joins its server_ids, which
-- keep only the servers running or stopped less than %(keep)s seconds ago. The schedules it
-- declared before and declares no more lose it. Pauses and fire times are kept.
WITH mine AS (
    SELECT * FROM unnest(%(names)s::text[], %(crons)s::text[], %(timezones)s::text[],
                         %(tasks)s::text[], %(queues)s::text[], %(on_missed)s::text[],
                         %(templates)s::text[])
        AS d (name, cron, timezone, task, queue, on_missed, template)
), dropped AS (
    UPDATE queued_task_schedules SET server_ids = array_remove(server_ids, %(server_id)s)
    WHERE %(server_id)s = ANY(server_ids) AND NOT name = ANY(%(names)s::text[])
)
INSERT INTO queued_task_schedules AS s (name, cron, timezone, task, queue, on_missed, template,
                                        server_ids, date_declared)
SELECT name, cron, timezone, task, queue, on_missed, template::jsonb,
       ARRAY[%(server_id)s::int], now()
FROM mine
ON CONFLICT (name) DO UPDATE
SET cron = excluded.cron, timezone = excluded.timezone, task = excluded.task,
    queue = excluded.queue, on_missed = excluded.on_missed, template = excluded.template,
    date_declared = excluded.date_declared,
    server_ids = ARRAY(
        SELECT w.id FROM queued_task_workers w
        WHERE w.id = ANY(s.server_ids || %(server_id)s::int)
          AND (w.is_running OR w.date_stopped > now() - make_interval(secs => %(keep)s))
        ORDER BY w.id)

-- name: schedules_declared
-- The declared schedules (all, or the one named %(name)s) with their state and the servers
-- that declare them, running or stopped less than %(keep)s seconds ago (none: not listed).
SELECT s.name, s.cron, s.timezone, s.task, s.queue, s.on_missed, s.template, s.paused,
       s.last_fire, s.next_fire,
       jsonb_agg(jsonb_build_object('id', w.id, 'host', w.hostname, 'pid', w.pid,
                                    'running', w.is_running) ORDER BY w.id) AS servers
FROM queued_task_schedules s
JOIN queued_task_workers w ON w.id = ANY(s.server_ids)
     AND (w.is_running OR w.date_stopped > now() - make_interval(secs => %(keep)s))
WHERE s.cron IS NOT NULL AND (%(name)s::text IS NULL OR s.name = %(name)s)
GROUP BY s.name
ORDER BY s.name
