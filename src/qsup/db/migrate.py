"""Versioned migrations, applied under an advisory lock so many servers can start at once."""

from __future__ import annotations

from typing import Any

import psycopg

from qsup.sql import migrations, queries

# Arbitrary constant: the advisory lock every qsup process takes to migrate ("qsup").
_LOCK_KEY = 0x7153_7570


def applied_versions(conn: psycopg.Connection[Any]) -> set[int]:
    row = conn.execute(queries()["migrations_table_exists"]).fetchone()
    if not row or not row[0]:
        return set()
    return {version for (version,) in conn.execute(queries()["applied_migrations"])}


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    done = applied_versions(conn)
    if all(version in done for version, _, _ in migrations()):
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
    return applied
