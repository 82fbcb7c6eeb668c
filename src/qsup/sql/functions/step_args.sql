-- A workflow step's arguments as its worker receives them (protocol.Job's args): the value it
-- was given, its own args and the rows (state, result, error) of the earlier steps it reads,
-- read as it is claimed (see 0007). Both claims (claim_batch in queries.sql and
-- qsup_claim_limited) call it for a step fed by earlier ones only: a plain task's args are
-- its own. Called as ``(SELECT a FROM qsup_step_args(...) AS a)``: a set-returning SQL
-- function (one row: an aggregate) that is STABLE is inlined into the calling statement, so
-- the plan is the subquery's own (a scalar SQL function with a subquery is not inlined: 3.2
-- against 3.6 ms per claim of 50 steps of 10 inputs). Each earlier step is found by one
-- primary-key probe (OFFSET 0 keeps the planner from joining the lookups as a scan).
CREATE OR REPLACE FUNCTION qsup_step_args(step_args jsonb, step_inputs jsonb)
RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('qsup_inputs', step_inputs -> 'value', 'args', step_args,
               'tasks', jsonb_object_agg(p.id, jsonb_build_array(p.state, p.result,
                                                                 p.error_message)))::text
    FROM jsonb_array_elements_text(step_inputs -> 'ids') AS i (id),
    LATERAL (SELECT q.id, q.state, q.result, q.error_message FROM queued_tasks q
             WHERE q.id = i.id::uuid OFFSET 0) AS p
$$;
