"""Every enqueue path meets a lost or refused database with the same qsup errors, one line
naming the host, against a real PostgreSQL whose backends are terminated under it."""

from __future__ import annotations

import asyncio
import socket

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from qsup import DatabaseUnreachable, Queue
from qsup.db.connect import one_line
from tests import tasks

LIBPQ_CLOSED = (
    "server closed the connection unexpectedly\n"
    "\tThis probably means the server terminated abnormally\n"
    "\tbefore or while processing the request."
)


def _terminate_others(conn) -> None:
    """End every other client session of this test's database (the queue's pool included)."""
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
        " current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )


def _host(url: str) -> str:
    """The host the message must name: an address, or the embedded server's socket dir."""
    return str(conninfo_to_dict(url)["host"])


def _one_meaningful_line(exc: pytest.ExceptionInfo[DatabaseUnreachable], host: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and host in message, message
    assert "terminating connection" in message or "server closed the connection" in message


def test_libpqs_wrapped_message_is_joined_on_one_line():
    assert one_line(psycopg.OperationalError(LIBPQ_CLOSED)) == (
        "server closed the connection unexpectedly This probably means the server terminated"
        " abnormally before or while processing the request."
    )
    assert one_line(psycopg.OperationalError("")) == "no answer"


CALLS = [(tasks.add, (1, 2), {}), (tasks.add, (3, 4), {"_unique_key": "k"})]


@pytest.mark.parametrize("calls", [CALLS[:1], CALLS], ids=["copy", "copy-and-insert"])
def test_a_lost_callers_connection_in_add_tasks_is_database_unreachable(db_url, conn, calls):
    queue = Queue(db_url)
    with psycopg.connect(db_url) as own:
        conn.execute("SELECT pg_terminate_backend(%s)", [own.info.backend_pid])
        with pytest.raises(DatabaseUnreachable, match="lost PostgreSQL at") as exc:
            queue.add_tasks(calls, connection=own)
        _one_meaningful_line(exc, _host(db_url))
        with pytest.raises(DatabaseUnreachable, match="lost PostgreSQL at"):
            queue.add_task(tasks.add, 1, 2, connection=own)


def test_a_lost_pool_connection_is_database_unreachable_on_every_pooled_path(db_url, conn):
    queue = Queue(db_url)
    try:
        queue.add_task(tasks.add, 0, 0)  # the pool is open and holds a connection
        _terminate_others(conn)
        with pytest.raises(DatabaseUnreachable, match="lost PostgreSQL at") as exc:
            queue.add_tasks(CALLS)
        _one_meaningful_line(exc, _host(db_url))
        queue.add_tasks(CALLS[:1])  # the pool replaced the broken connection
        _terminate_others(conn)
        with pytest.raises(DatabaseUnreachable, match="lost PostgreSQL at"):
            asyncio.run(queue.add_task_async(tasks.add, 1, 2))
    finally:
        queue.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_closed_port_is_database_unreachable_on_every_path():
    queue = Queue(f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres")
    attempts = [
        lambda: queue.add_task(tasks.add, 1, 2),
        lambda: queue.add_tasks(CALLS),
        lambda: asyncio.run(queue.add_task_async(tasks.add, 1, 2)),
    ]
    for attempt in attempts:
        with pytest.raises(DatabaseUnreachable, match="cannot reach PostgreSQL at 127.0.0.1:"):
            attempt()
