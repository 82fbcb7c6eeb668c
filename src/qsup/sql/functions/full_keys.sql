-- The concurrency keys of ``q`` that hold ``per_key`` slots or more (tasks of ``finished``
-- hold none): qsup_claim_limited's rounds skip them.
CREATE OR REPLACE FUNCTION qsup_full_keys(q text, finished uuid[], per_key integer) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(k.concurrency_key), '{}') FROM (
        SELECT t.concurrency_key FROM queued_tasks t
        WHERE t.flow_slot = 1 AND t.state IN ('picked_up', 'running') AND t.queue = q
          AND NOT (t.id = ANY(finished))
          AND t.concurrency_key IS NOT NULL
        GROUP BY t.concurrency_key HAVING count(*) >= per_key) AS k
$$;
