-- Bookkeeping of schema migrations.

-- name: migrations_table_exists
-- Whether qsup's migration table exists yet.
SELECT to_regclass('qsup_migrations') IS NOT NULL

-- name: create_migrations_table
-- The table listing applied migrations.
CREATE TABLE IF NOT EXISTS qsup_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: applied_migrations
-- Versions already applied.
SELECT version FROM qsup_migrations

-- name: functions_table_exists
-- Whether the digest of the applied functions is recorded (migration 0015; then every
-- migration before it was applied and qsup_migrations exists too).
SELECT to_regclass('qsup_functions') IS NOT NULL

-- name: migration_state
-- What migrate compares with the package, in one round trip: the versions applied and the
-- digest of the functions applied.
SELECT array(SELECT version FROM qsup_migrations), (SELECT digest FROM qsup_functions)

-- name: applied_functions
-- The digest of the functions applied (under the migration lock).
SELECT digest FROM qsup_functions

-- name: record_functions
-- Remember which text of the functions the database runs.
INSERT INTO qsup_functions (digest) VALUES (%(digest)s)
ON CONFLICT (only_row) DO UPDATE SET digest = excluded.digest, applied_at = now()

-- name: record_migration
-- Remember that a migration ran.
INSERT INTO qsup_migrations (version, name) VALUES (%(version)s, %(name)s)

-- name: migration_lock
-- Serialise migrations across every process that starts at once (until the transaction ends).
SELECT pg_advisory_xact_lock(%(key)s)
