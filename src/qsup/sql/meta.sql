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

-- name: record_migration
-- Remember that a migration ran.
INSERT INTO qsup_migrations (version, name) VALUES (%(version)s, %(name)s)

-- name: migration_lock
-- Serialise migrations across every process that starts at once (until the transaction ends).
SELECT pg_advisory_xact_lock(%(key)s)
