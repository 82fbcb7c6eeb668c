-- A workflow step's arguments as its worker receives them (protocol.Job's args): the value it
-- was given, its own args and the rows (state, result, error) of the earlier steps it reads,
-- read as it is claimed (see 0007). Both claims (claim_batch in queries.sql and
-- qsup_claim_limited) call it for a step fed by earlier ones only: a plain task's args are
-- its own, and it pays no call. STABLE: the calling statement's snapshot, as a subquery of it
-- would read; each earlier step found by one primary-key probe (OFFSET 0 keeps the planner
-- from turning the lookups into a join it could plan as a scan).
CREATE OR REPLACE FUNCTION qsup_step_args(step_args jsonb, step_inputs jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('qsup_inputs', step_inputs -> 'value', 'args', step_args,
               'tasks', jsonb_object_agg(p.id, jsonb_build_array(p.state, p.result,
                                                                 p.error_message)))::text
    FROM jsonb_array_elements_text(step_inputs -> 'ids') AS i (id),
    LATERAL (SELECT q.id, q.state, q.result, q.error_message FROM queued_tasks q
             WHERE q.id = i.id::uuid OFFSET 0) AS p
$$;
