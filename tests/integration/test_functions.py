"""Database functions are code (sql/functions/): an upgraded database and a new one run the same
text, a changed file is applied again by the next migrate, and an up-to-date migrate stays two
reads without a lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from qsup.db.migrate import migrate
from qsup.sql import functions, migrations, queries
from tests.integration.test_cli import run

FIRST_CLAIM = Path(__file__).with_name("data") / "claim_limited_first.sql"
DEFINITIONS = """
    SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p
    WHERE p.proname LIKE 'qsup\\_%' AND p.pronamespace = 'public'::regnamespace ORDER BY 1"""


@contextmanager
def _database(server_url: str, name: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(make_conninfo(server_url, dbname=name), autocommit=True) as conn:
            yield conn
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _definitions(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return dict(conn.execute(DEFINITIONS).fetchall())  # type: ignore[arg-type]


def _run_other_text(conn: psycopg.Connection[Any], text: str) -> None:
    """Make the database run another text of qsup_full_keys than its file's."""
    body = f"$$ SELECT '{{{text}}}'::text[] $$"
    conn.execute(
        "CREATE OR REPLACE FUNCTION qsup_full_keys(q text, finished uuid[], per_key integer)"
        f" RETURNS text[] LANGUAGE sql STABLE AS {body}".encode()
    )


def _migrate_as_before(conn: psycopg.Connection[Any]) -> None:
    """What qsup did before functions were code: each migration file run once, 0008's
    functions as that file wrote them (after the claim's first signature, from its first text)."""
    conn.execute(queries()["create_migrations_table"])
    for version, name, sql in migrations():
        if name.startswith("0015"):
            break
        conn.execute(sql.encode())
        if name.startswith("0008"):
            conn.execute(FIRST_CLAIM.read_bytes())
        conn.execute(queries()["record_migration"], {"version": version, "name": name})


@pytest.mark.timeout(60)
def test_an_upgraded_database_and_a_new_one_run_the_same_functions(
    server_url: str, testrun_uid: str, worker_id: str
) -> None:
    stem = f"qsup_fn_{testrun_uid[:8]}_{worker_id}"
    with _database(server_url, f"{stem}_new") as new, _database(server_url, f"{stem}_old") as old:
        migrate(new)
        _migrate_as_before(old)
        before = _definitions(old)
        assert len([f for f in before if f.startswith("qsup_claim_limited(")]) == 2
        assert migrate(old) == [name for _, name, _ in migrations() if name.startswith("0015")]
        wanted = _definitions(new)
        assert _definitions(old) == wanted
        # one function per name (the first signature dropped), each defined by a file
        names = sorted(f.split("(")[0] for f in wanted)
        assert names == [
            "qsup_claim_limited",
            "qsup_full_keys",
            "qsup_live_servers",
        ]
        text = "".join(sql for _, sql in functions())
        assert all(f"FUNCTION {n}(" in text for n in names)


@pytest.fixture
def migrated(
    server_url: str, testrun_uid: str, worker_id: str
) -> Iterator[psycopg.Connection[Any]]:
    """A database of its own, migrated (the test changes its functions)."""
    with _database(server_url, f"qsup_fn_{testrun_uid[:8]}_{worker_id}_own") as conn:
        migrate(conn)
        yield conn


@pytest.mark.timeout(60)
def test_a_changed_function_file_is_applied_by_the_next_migrate(
    migrated: psycopg.Connection[Any],
) -> None:
    wanted = _definitions(migrated)
    # the database runs an older text: another body, and the digest of another file set
    _run_other_text(migrated, "older")
    assert _definitions(migrated) != wanted
    migrate(migrated)  # the digest still matches: nothing to do, the old text stays
    assert _definitions(migrated) != wanted
    migrated.execute("UPDATE qsup_functions SET digest = 'older'")
    assert migrate(migrated) == []  # no migration, but the functions again
    assert _definitions(migrated) == wanted
    assert migrated.execute("SELECT digest FROM qsup_functions").fetchone() != ("older",)


@pytest.mark.timeout(60)
def test_qsup_db_migrate_applies_a_changed_function_and_says_so(
    migrated: psycopg.Connection[Any],
) -> None:
    wanted = _definitions(migrated)
    _run_other_text(migrated, "older")
    migrated.execute("UPDATE qsup_functions SET digest = 'older'")
    url = migrated.info.dsn
    result = run(["db", "migrate"], db_url=url)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "schema is up to date; database functions applied\n",
        "",
    )
    assert _definitions(migrated) == wanted
    result = run(["db", "migrate"], db_url=url)
    assert result.stdout == "schema is up to date\n"


@pytest.mark.timeout(60)
def test_an_older_qsup_leaves_the_functions_of_a_newer_one(
    migrated: psycopg.Connection[Any],
) -> None:
    # a newer qsup applied its migration 9999 and the functions of its own text
    migrated.execute("INSERT INTO qsup_migrations (version, name) VALUES (9999, '9999_x.sql')")
    migrated.execute("UPDATE qsup_functions SET digest = 'newer'")
    _run_other_text(migrated, "newer")
    newer = _definitions(migrated)
    assert migrate(migrated) == []
    assert _definitions(migrated) == newer
    assert migrated.execute("SELECT digest FROM qsup_functions").fetchone() == ("newer",)


class _Counting(psycopg.Connection[Any]):
    statements: list[str]

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.statements.append(query.decode() if isinstance(query, bytes) else str(query))
        return super().execute(query, *args, **kwargs)


@pytest.mark.timeout(30)
def test_an_up_to_date_migrate_is_two_reads_without_a_lock(database_url: str) -> None:
    with _Counting.connect(database_url, autocommit=True) as conn:
        conn.statements = []
        migrate(conn)  # the session's database is migrated already
        conn.statements.clear()
        assert migrate(conn) == []
        assert len(conn.statements) == 2
        assert not any("lock" in s for s in conn.statements)
