-- qsup schema, version 15: database functions are code (src/qsup/sql/functions/), applied by
-- every migrate with CREATE OR REPLACE whenever their text differs from the digest recorded
-- here, so an upgraded database and a new one run the same functions (before, they were
-- created inside migration 0008 and a change to them reached new databases only).
CREATE TABLE qsup_functions (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    digest text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
