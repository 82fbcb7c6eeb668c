-- Django's task backend (qsup.django): its reads and writes run on Django's own connection.

-- name: django_result
-- One task as django.tasks' TaskResult shows it, with the log rows that tell its attempts apart
-- (each worker's start, the exceptions, the supervisor's errors), oldest first, as JSON text.
SELECT t.name, t.state, t.queue, t.priority, t.args::text, t.kwargs::text, t.date_enqueued,
       t.date_started, t.date_done, t.attempts, t.result::text, t.error_message,
       coalesce((SELECT json_agg(json_build_array(l.type, l.message,
                                                  extract(epoch FROM l.date_created))
                                 ORDER BY l.date_created, l.id)
                 FROM queued_task_logs l
                 WHERE l.queued_task_id = t.id
                   AND l.type IN ('django:worker', 'django:error', 'error')), '[]')::text
FROM queued_tasks t WHERE t.id = %(id)s::uuid
