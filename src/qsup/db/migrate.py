"""Versioned migrations, then the database functions, applied under an advisory lock so many
servers can start at once.

Migrations are history (a released one never changes); the functions of ``sql/functions/`` are
code: applied again (CREATE OR REPLACE) whenever their text differs from the digest the
database recorded, so an upgraded database and a new one run the same functions."""

from __future__ import annotations

from typing import Any

import psycopg

from qsup.sql import functions, functions_digest, migrations, queries

# Arbitrary constant: the advisory lock every qsup process takes to migrate ("qsup").
_LOCK_KEY = 0x7153_7570


def applied_versions(conn: psycopg.Connection[Any]) -> set[int]:
    row = conn.execute(queries()["migrations_table_exists"]).fetchone()
    if not row or not row[0]:
        return set()
    return {version for (version,) in conn.execute(queries()["applied_migrations"])}


def up_to_date(conn: psycopg.Connection[Any]) -> bool:
    """Whether every migration and the current functions are applied: two cheap reads, no lock."""
    row = conn.execute(queries()["functions_table_exists"]).fetchone()
    if not row or not row[0]:
        return False
    state = conn.execute(queries()["migration_state"]).fetchone()
    assert state is not None  # a SELECT without FROM returns its one row
    done, digest = set(state[0]), state[1]
    known = {version for version, _, _ in migrations()}
    if not known <= done:
        return False
    # A database a newer qsup migrated keeps its functions: an older server started during a
    # rolling deploy must not put back the text the newer ones replaced.
    return digest == functions_digest() or not done <= known


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply pending migrations, then the functions if they changed; returns the names of the
    migrations applied (empty when there were none)."""
    if up_to_date(conn):
        return []  # the common case takes no lock
    applied: list[str] = []
    with conn.transaction():
        conn.execute(queries()["migration_lock"], {"key": _LOCK_KEY})
        conn.execute(queries()["create_migrations_table"])
        done = applied_versions(conn)
        for version, name, sql in migrations():
            if version not in done:
                conn.execute(sql.encode())  # migration files are the package's own SQL
                conn.execute(queries()["record_migration"], {"version": version, "name": name})
                applied.append(name)
        _apply_functions(conn, always=bool(applied))
    return applied


def _apply_functions(conn: psycopg.Connection[Any], always: bool) -> None:
    """Create or replace every function (after the migrations, which may have created an
    older text or added the columns a function reads) unless another process just did."""
    digest = functions_digest()
    if not always:
        row = conn.execute(queries()["applied_functions"]).fetchone()
        if row and row[0] == digest:
            return
    for _, sql in functions():
        conn.execute(sql.encode())  # function files are the package's own SQL
    conn.execute(queries()["record_functions"], {"digest": digest})
