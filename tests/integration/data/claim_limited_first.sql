-- qsup_claim_limited as migration 0008 first created it (commit e7f5b3c): another argument
-- list than today's: CREATE OR REPLACE would add the new one beside it, not replace it.
CREATE FUNCTION qsup_claim_limited(queues text[], server integer, want integer,
                                   default_timeout double precision, finished uuid[])
RETURNS TABLE (id text, name varchar, args text, kwargs text, timeout double precision,
               attempts integer, max_retries integer, context text, queue text,
               retry_in double precision)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    q text;
    ctl record;
    room integer;
    got integer;
    held_total integer;
    started_in_window integer;
    full_keys text[];
    batch uuid[];
    taken integer;
    wait_for double precision;
    offered integer;
BEGIN
    FOREACH q IN ARRAY queues LOOP
        EXIT WHEN want <= 0;
        SELECT c.paused, coalesce(c.concurrency, c.file_concurrency) AS concurrency,
               coalesce(c.rate, c.file_rate) AS rate,
               coalesce(c.period, c.file_period) AS period,
               coalesce(c.key_concurrency, c.file_key_concurrency) AS key_concurrency
        INTO ctl FROM queued_task_queues c WHERE c.queue = q FOR UPDATE;
        CONTINUE WHEN NOT FOUND OR ctl.paused;
        room := want;
        offered := want;
        wait_for := NULL;
        IF ctl.concurrency IS NOT NULL THEN
            SELECT count(*) INTO held_total FROM queued_tasks t
            WHERE t.flow_slot = 1 AND t.state IN ('picked_up', 'running') AND t.queue = q
                  AND NOT (t.id = ANY(finished));
            room := least(room, ctl.concurrency - held_total);
        END IF;
        IF ctl.rate IS NOT NULL THEN
            DELETE FROM queued_task_starts s
            WHERE s.queue = q AND s.at <= clock_timestamp() - make_interval(secs => ctl.period);
            SELECT coalesce(sum(s.n), 0) INTO started_in_window FROM queued_task_starts s
            WHERE s.queue = q;
            IF ctl.rate - started_in_window < room THEN
                room := ctl.rate - started_in_window;
                -- when the oldest starts leave the window, room grows again
                SELECT extract(epoch FROM min(s.at) + make_interval(secs => ctl.period)
                               - clock_timestamp())
                INTO wait_for FROM queued_task_starts s WHERE s.queue = q;
            END IF;
        END IF;
        got := 0;
        full_keys := '{}';
        IF ctl.key_concurrency IS NOT NULL THEN
            SELECT coalesce(array_agg(k.concurrency_key), '{}') INTO full_keys FROM (
                SELECT t.concurrency_key FROM queued_tasks t
                WHERE t.flow_slot = 1 AND t.state IN ('picked_up', 'running') AND t.queue = q
                  AND NOT (t.id = ANY(finished))
                  AND t.concurrency_key IS NOT NULL
                GROUP BY t.concurrency_key HAVING count(*) >= ctl.key_concurrency) AS k;
        END IF;
        -- Each round takes the first due tasks in priority order whose key is not full, at
        -- most key_concurrency (less what runs) of one key: a round admits at least one task,
        -- so a key with a long backlog never holds up the others.
        WHILE got < room LOOP
            WITH candidates AS (
                SELECT t.id, t.concurrency_key AS k, t.priority, t.scheduled_at
                FROM queued_tasks t
                WHERE t.claimable = 1 AND t.scheduled_at <= now() AND t.queue = q
                  AND (t.concurrency_key IS NULL OR NOT (t.concurrency_key = ANY(full_keys)))
                ORDER BY t.priority DESC, t.scheduled_at, t.id
                LIMIT room - got
                FOR UPDATE SKIP LOCKED
            ), ranked AS (
                SELECT c.id, c.k, row_number() OVER (
                    PARTITION BY c.k ORDER BY c.priority DESC, c.scheduled_at, c.id) AS rn
                FROM candidates c
            ), running AS (
                SELECT t.concurrency_key AS k, count(*) AS n FROM queued_tasks t
                WHERE ctl.key_concurrency IS NOT NULL
                  AND t.flow_slot = 1 AND t.state IN ('picked_up', 'running') AND t.queue = q
                  AND NOT (t.id = ANY(finished))
                  AND t.concurrency_key IN (SELECT r.k FROM ranked r)
                GROUP BY t.concurrency_key
            )
            SELECT coalesce(array_agg(r.id), '{}') INTO batch FROM ranked r
            LEFT JOIN running ON running.k = r.k
            WHERE ctl.key_concurrency IS NULL OR r.k IS NULL
               OR r.rn + coalesce(running.n, 0) <= ctl.key_concurrency;
            taken := cardinality(batch);
            EXIT WHEN taken = 0;
            RETURN QUERY
            WITH claimed AS (
                UPDATE queued_tasks t
                SET state = 'picked_up', attempts = t.attempts + 1, server_id = server,
                    flow_slot = 1
                WHERE t.id = ANY(batch)
                RETURNING t.id, t.name, t.args, t.kwargs, t.timeout, t.attempts, t.max_retries,
                          t.context, t.priority, t.scheduled_at
            )
            SELECT c.id::text, c.name::varchar, c.args::text, c.kwargs::text,
                   coalesce(c.timeout, default_timeout), c.attempts, c.max_retries,
                   c.context::text, q, NULL::float8
            FROM claimed c ORDER BY c.priority DESC, c.scheduled_at, c.id;
            got := got + taken;
            EXIT WHEN ctl.key_concurrency IS NULL;
            SELECT coalesce(array_agg(k.concurrency_key), '{}') INTO full_keys FROM (
                SELECT t.concurrency_key FROM queued_tasks t
                WHERE t.flow_slot = 1 AND t.state IN ('picked_up', 'running') AND t.queue = q
                  AND NOT (t.id = ANY(finished))
                  AND t.concurrency_key IS NOT NULL
                GROUP BY t.concurrency_key HAVING count(*) >= ctl.key_concurrency) AS k;
        END LOOP;
        IF got > 0 AND ctl.rate IS NOT NULL THEN
            INSERT INTO queued_task_starts (queue, n) VALUES (q, got);
        END IF;
        want := want - got;
        RETURN QUERY SELECT NULL::text, NULL::varchar, NULL::text, NULL::text, NULL::float8,
            NULL::integer, NULL::integer, NULL::text, q,
            CASE WHEN NOT EXISTS (SELECT 1 FROM queued_tasks t WHERE t.claimable = 1
                                  AND t.scheduled_at <= now() AND t.queue = q) THEN NULL
                 WHEN wait_for IS NOT NULL AND got >= room THEN greatest(wait_for, 0.001)
                 WHEN got >= offered THEN 0
                 ELSE -1 END;
    END LOOP;
END
$$;
