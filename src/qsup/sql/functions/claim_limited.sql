-- The limited claim: one queue at a time, each serialized by its row locked FOR UPDATE, in
-- a function so that every statement after the lock takes a fresh snapshot (in one
-- statement the count of held tasks would be read from a snapshot taken before the lock
-- wait, blind to the claim that just committed) and all of it is one round trip.
-- Tasks of ``finished`` (those whose end the calling server knows of but has not written yet)
-- hold no slot. For each queue of ``queues`` in order, claims up to what is left of want,
-- never beyond its concurrency, its rate window or its key_concurrency; priority order
-- within the queue.
-- Returns the claimed jobs (protocol.Job's columns, retry_in NULL) and, per queue visited, a
-- status row with id NULL and retry_in: NULL nothing more is due; 0 it took all it was
-- offered, some (claim again when there is room); > 0 seconds until its rate window lets more
-- start; -1 full (concurrency or every waiting key): again when a slot frees.
-- Reaching ahead: a queue with only a concurrency limit that is exactly full also gives up to
-- aheads[i] (plus two per slot it just took; at most two per slot the server holds) tasks
-- more, marked flow_slot = 2 and ``ahead``: they hold no slot and must not run until the
-- calling server hands one of its slots on to them (its flush writes the slot holder's
-- outcome and sets flow_slot = 1 on its successor in one transaction), so a freed slot is
-- refilled without waiting for this claim.

-- Its signature before the claim ahead (migration 0008 as first written): a changed argument
-- list is another function, which CREATE OR REPLACE would add beside the old one.
DROP FUNCTION IF EXISTS qsup_claim_limited(text[], integer, integer, double precision, uuid[]);

CREATE OR REPLACE FUNCTION qsup_claim_limited(queues text[], server integer, want integer,
                                   default_timeout double precision, finished uuid[],
                                   aheads integer[])
RETURNS TABLE (id text, name varchar, args text, kwargs text, timeout double precision,
               attempts integer, max_retries integer, context text, queue text, headers text,
               crash_causes text, ahead boolean, retry_in double precision)
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
    window_s double precision;
    qi integer := 0;
    slot smallint;
    extra integer;
    mine integer;
BEGIN
    FOREACH q IN ARRAY queues LOOP
        qi := qi + 1;
        CONTINUE WHEN want <= 0 AND coalesce(aheads[qi], 0) <= 0;
        SELECT c.paused, coalesce(c.concurrency, c.file_concurrency) AS concurrency,
               coalesce(c.rate, c.file_rate) AS rate,
               coalesce(c.period, c.file_period) AS period,
               coalesce(c.key_concurrency, c.file_key_concurrency) AS key_concurrency
        INTO ctl FROM queued_task_queues c WHERE c.queue = q FOR UPDATE;
        CONTINUE WHEN NOT FOUND OR ctl.paused;
        room := greatest(want, 0);
        offered := room;
        held_total := 0;
        wait_for := NULL;
        IF ctl.concurrency IS NOT NULL THEN
            SELECT count(*) INTO held_total FROM queued_tasks t
            WHERE t.flow_slot = 1 AND t.state IN ('picked_up', 'running') AND t.queue = q
                  AND NOT (t.id = ANY(finished));
            room := least(room, ctl.concurrency - held_total);
        END IF;
        IF ctl.rate IS NOT NULL THEN
            -- The window is the period and a hand-over margin: a claimed task starts in its
            -- worker some milliseconds later, and starts (not claims) must keep to the rate.
            window_s := ctl.period + least(0.1, 0.02 * ctl.period);
            DELETE FROM queued_task_starts s
            WHERE s.queue = q AND s.at <= clock_timestamp() - make_interval(secs => window_s);
            SELECT coalesce(sum(s.n), 0) INTO started_in_window FROM queued_task_starts s
            WHERE s.queue = q;
            IF ctl.rate - started_in_window < room THEN
                room := ctl.rate - started_in_window;
                -- when the oldest starts leave the window, room grows again
                SELECT extract(epoch FROM min(s.at) + make_interval(secs => window_s)
                               - clock_timestamp())
                INTO wait_for FROM queued_task_starts s WHERE s.queue = q;
            END IF;
        END IF;
        got := 0;
        extra := 0;
        slot := 1;
        full_keys := '{}';
        IF ctl.key_concurrency IS NOT NULL THEN
            full_keys := qsup_full_keys(q, finished, ctl.key_concurrency);
        END IF;
        -- Each round takes the first due tasks in priority order whose key is not full, at
        -- most key_concurrency (less what runs) of one key: a round admits at least one task,
        -- so a key with a long backlog never holds up the others.
        <<rounds>>
        LOOP
            IF got >= room THEN
                -- exactly full with only a concurrency limit: reach ahead (see above), once
                EXIT rounds WHEN slot = 2 OR ctl.concurrency IS NULL OR ctl.rate IS NOT NULL
                    OR ctl.key_concurrency IS NOT NULL
                    OR held_total + got <> ctl.concurrency
                    OR coalesce(aheads[qi], 0) + got <= 0;
                slot := 2;
                extra := got;  -- the slot holders taken: each may have two successors too
                -- never more ahead than twice the slots this server holds there
                SELECT count(*) INTO mine FROM queued_tasks t
                WHERE t.flow_slot = 1 AND t.state IN ('picked_up', 'running') AND t.queue = q
                      AND t.server_id = server AND NOT (t.id = ANY(finished));
                room := got + least(coalesce(aheads[qi], 0) + 2 * got, 2 * mine);
            END IF;
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
            -- The jobs as claim_batch (queries.sql) makes them, a workflow step's inputs
            -- included: read here, after the lock, from a fresh snapshot.
            RETURN QUERY
            WITH claimed AS (
                UPDATE queued_tasks t
                SET state = 'picked_up', attempts = t.attempts + 1, server_id = server,
                    flow_slot = slot
                WHERE t.id = ANY(batch)
                RETURNING t.id, t.name, t.args, t.kwargs, t.timeout, t.attempts, t.max_retries,
                          t.context, t.headers, t.priority, t.scheduled_at, t.workflow_inputs,
                          t.crash_causes
            )
            SELECT c.id::text, c.name::varchar,
                   CASE WHEN c.workflow_inputs IS NULL THEN c.args::text
                        ELSE (SELECT jsonb_build_object('qsup_inputs', c.workflow_inputs -> 'value',
                                  'args', c.args,
                                  'tasks', jsonb_object_agg(p.id, jsonb_build_array(
                                      p.state, p.result, p.error_message)))::text
                              FROM jsonb_array_elements_text(c.workflow_inputs -> 'ids') AS i (id),
                              LATERAL (SELECT qt.id, qt.state, qt.result, qt.error_message
                                       FROM queued_tasks qt WHERE qt.id = i.id::uuid OFFSET 0) AS p)
                   END,
                   c.kwargs::text, coalesce(c.timeout, default_timeout), c.attempts,
                   c.max_retries, c.context::text, q, c.headers::text, c.crash_causes,
                   slot = 2, NULL::float8
            FROM claimed c ORDER BY c.priority DESC, c.scheduled_at, c.id;
            got := got + taken;
            CONTINUE rounds WHEN ctl.key_concurrency IS NULL;
            full_keys := qsup_full_keys(q, finished, ctl.key_concurrency);
        END LOOP;
        IF slot = 2 THEN
            got := extra;  -- the tasks taken ahead hold no slot and no room of want
        END IF;
        IF got > 0 AND ctl.rate IS NOT NULL THEN
            INSERT INTO queued_task_starts (queue, n) VALUES (q, got);
        END IF;
        want := want - got;
        RETURN QUERY SELECT NULL::text, NULL::varchar, NULL::text, NULL::text, NULL::float8,
            NULL::integer, NULL::integer, NULL::text, q, NULL::text, NULL::text, NULL::boolean,
            CASE WHEN NOT EXISTS (SELECT 1 FROM queued_tasks t WHERE t.claimable = 1
                                  AND t.scheduled_at <= now() AND t.queue = q) THEN NULL
                 WHEN wait_for IS NOT NULL AND got >= room THEN greatest(wait_for, 0.001)
                 WHEN got >= offered AND offered > 0 THEN 0
                 ELSE -1 END;
    END LOOP;
END
$$;
