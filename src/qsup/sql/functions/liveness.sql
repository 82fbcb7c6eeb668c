-- The servers whose liveness lock is held (each takes it, class repo.LIVENESS_CLASS, key its
-- id, on a session that lives as long as the server): what heartbeat and lock_free_servers
-- (queries.sql) ask before declaring a server dead. pg_locks shows every database's locks: a
-- server of the same id in another database of the cluster (another deployment, or another
-- test worker) must not keep ours looking alive. STABLE: one scan of the lock table per
-- statement, however many servers it is asked about.
CREATE OR REPLACE FUNCTION qsup_live_servers(lock_class integer) RETURNS SETOF integer
LANGUAGE sql STABLE AS $$
    SELECT l.objid::integer FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.classid = lock_class::oid AND l.objsubid = 2
      AND l.granted
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
$$;
