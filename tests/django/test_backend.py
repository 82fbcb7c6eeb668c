"""The backend in this process, against the real database: rows, transactions, results."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import django
import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connections, transaction
from django.tasks import TaskResultStatus, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from orders.models import Order
from orders.tasks import charge, fulfil, ship_express

from qsup.django import results, runtime
from tests.conftest import one, task_row


def count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return int(one(conn, "SELECT count(*) FROM queued_tasks"))


def test_keywords_starting_with_an_underscore_are_the_tasks_own(shop: str) -> None:
    from tests.django.tasks import labelled

    result = labelled.enqueue(7, _note="kept")  # no qsup option here: the function's keyword
    with psycopg.connect(shop) as conn:
        row = task_row(conn, uuid.UUID(result.id))
    assert (row["args"], row["kwargs"]) == ([7], {"_note": "kept"})
    assert (labelled.get_result(result.id).kwargs) == {"_note": "kept"}


def test_enqueue_writes_a_qsup_task(shop: str) -> None:
    sent: list[Any] = []

    def on_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
        sent.append(task_result)

    task_enqueued.connect(on_enqueued)
    later = datetime.now(UTC) + timedelta(hours=1)
    try:
        result = ship_express.using(priority=-20, run_after=later).enqueue(7)
    finally:
        task_enqueued.disconnect(on_enqueued)
    with psycopg.connect(shop) as conn:
        row = task_row(conn, uuid.UUID(result.id))
    assert row["name"] == "orders.tasks:ship_express"
    assert (row["args"], row["kwargs"]) == ([7], {})
    assert (row["queue"], row["priority"], row["state"]) == ("default", -20, "enqueued")
    assert row["scheduled_at"] == later
    assert (row["max_retries"], row["timeout"]) == (1, 60)  # the backend's OPTIONS
    assert [r.id for r in sent] == [result.id] and sent[0].enqueued_at is not None
    fetched = ship_express.get_result(result.id)
    assert fetched.status == TaskResultStatus.READY
    assert (fetched.args, fetched.kwargs) == ([7], {})
    assert (fetched.task.priority, fetched.worker_ids, fetched.errors) == (-20, [], [])
    assert fetched.enqueued_at is not None and fetched.started_at is None


def test_qsup_options_of_a_task(shop: str) -> None:
    strict = dataclasses.replace(fulfil, timeout=5.0, max_retries=0, unique_key="fulfil-one",
                                 concurrency_key=lambda order_id: f"order-{order_id}")  # fmt: skip
    first, again = strict.enqueue(1), strict.enqueue(1)
    assert again.id == first.id  # the unfinished holder of the unique key
    with psycopg.connect(shop) as conn:
        row = task_row(conn, uuid.UUID(first.id))
    assert (row["timeout"], row["max_retries"]) == (5.0, 0)
    assert (row["unique_key"], row["concurrency_key"]) == ("fulfil-one", "order-1")


@pytest.mark.skipif(django.VERSION < (6, 1), reason="@task takes extra options from Django 6.1")
def test_qsup_options_through_the_task_decorator(shop: str) -> None:
    from tests.django.tasks import short_nap

    result = short_nap.enqueue(5)
    assert short_nap.enqueue(5).id == result.id
    with psycopg.connect(shop) as conn:
        row = task_row(conn, uuid.UUID(result.id))
    assert (row["timeout"], row["max_retries"], row["unique_key"]) == (0.3, 0, "nap-5")


def test_another_backends_task_is_refused(shop: str) -> None:
    from tests.django.tasks import elsewhere_only

    with pytest.raises(InvalidTask, match="another backend's task: declare it with @task"):
        elsewhere_only.using(backend="default")
    assert count(shop) == 0


def test_async_enqueue_and_result(shop: str) -> None:
    async def enqueue_and_read() -> Any:
        result = await fulfil.aenqueue(3)
        return result, await fulfil.aget_result(result.id)

    result, fetched = asyncio.run(enqueue_and_read())
    assert (fetched.id, fetched.args, fetched.status) == (result.id, [3], TaskResultStatus.READY)
    assert count(shop) == 1


def test_unknown_or_malformed_ids_do_not_exist(shop: str) -> None:
    for missing in (str(uuid.uuid4()), "not-an-id"):
        with pytest.raises(TaskResultDoesNotExist):
            fulfil.get_result(missing)


def test_invalid_tasks_are_refused_before_the_database(shop: str) -> None:
    with pytest.raises(InvalidTask, match="Queue 'nope' is not valid"):
        fulfil.using(queue_name="nope")
    with pytest.raises(InvalidTask, match="priority"):
        fulfil.using(priority=101)
    with pytest.raises(ValueError, match="JSON"):
        fulfil.enqueue(object())
    assert count(shop) == 0


def test_enqueue_joins_the_callers_transaction(shop: str) -> None:
    with transaction.atomic():
        order = Order.objects.create(item="book")
        result = fulfil.enqueue(order.id)
        assert count(shop) == 0  # not committed: no server can see it yet
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM queued_tasks WHERE id = %s", [result.id])
            assert cursor.fetchone() == (1,)
    assert count(shop) == 1


def test_a_rolled_back_atomic_block_leaves_nothing(shop: str) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        order = Order.objects.create(item="book")
        fulfil.enqueue(order.id)
        raise RuntimeError("the view failed")
    assert count(shop) == 0 and not Order.objects.exists()


def test_a_refused_insert_leaves_the_callers_transaction_usable(shop: str) -> None:
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON queued_tasks FOR EACH ROW"
            " WHEN (NEW.name LIKE '%%charge') EXECUTE FUNCTION refuse()"
        )
    try:
        with transaction.atomic():
            Order.objects.create(item="first")
            with pytest.raises(DatabaseError, match="refused by the test"):
                charge.enqueue(1, 100)
            Order.objects.create(item="second")  # the transaction is not aborted
            fulfil.enqueue(1)
    finally:
        with psycopg.connect(shop, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse ON queued_tasks; DROP FUNCTION refuse()")
    assert Order.objects.count() == 2 and count(shop) == 1


def test_tables_behind_another_alias_get_the_task_on_commit(shop: str) -> None:
    elsewhere = fulfil.using(backend="elsewhere")
    with pytest.raises(RuntimeError), transaction.atomic():
        elsewhere.enqueue(1)
        raise RuntimeError("rolled back")
    assert count(shop) == 0
    with transaction.atomic():
        result = elsewhere.enqueue(2)
        with transaction.atomic(using="queue"):
            assert count(shop) == 0  # the queue alias's own transaction does not commit it
    assert count(shop) == 1
    fetched = task_backends["elsewhere"].get_result(result.id)
    assert (fetched.args, fetched.backend, fetched.task.backend) == ([2], "elsewhere", "elsewhere")
    fetched.refresh()  # asks the backend it came from


def test_errors_from_qsup_error_rows() -> None:
    killed = "attempt 1/2 (CPU 0.1 s, peak 1 MB, growth 0 MB) failed, retry in 0.1 s: " + (
        "WorkerDied: worker pid 12 died running orders.tasks:fulfil (SIGKILL)"
    )
    assert results.qsup_error(killed).exception_class_path == "qsup.django.errors.WorkerDied"
    timeout = "attempt 2/2 failed, no retry left: TaskTimeout: x ran longer than 1 s"
    assert results.qsup_error(timeout).exception_class_path == "qsup.errors.TaskTimeout"
    trace = 'Traceback (most recent call last):\n  File "a.py", line 1\nKeyError: 1\n'
    assert results.qsup_error(
        f"attempt 1/1 failed, no retry left: {trace}"
    ).exception_class_path == ("builtins.KeyError")
    quarantined = f"attempt 3 failed: {killed}; quarantined: killed 3 workers (SIGKILL)"
    assert results.qsup_error(quarantined).exception_class_path == (
        "qsup.django.errors.TaskQuarantined"
    )


def test_cancelled_is_failed_with_an_error_saying_so(shop: str) -> None:
    result = fulfil.enqueue(1)
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(
            "UPDATE queued_tasks SET state = 'cancelled', date_done = now(),"
            " error_message = 'cancelled by operator' WHERE id = %s",
            [result.id],
        )
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == ["qsup.django.errors.TaskCancelled"]
    assert result.errors[0].traceback == "cancelled by operator"


def test_call_command_qsup(shop: str, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("QUEUE_DATABASE_URL", shop)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the command sets qsup's own
    result = fulfil.enqueue(4)
    call_command("qsup", "task", "show", result.id, "--json")
    assert json.loads(capsys.readouterr().out)["args"] == [4]
    with pytest.raises(CommandError) as failed:
        call_command("qsup", "task", "show", missing := str(uuid.uuid4()))
    assert failed.value.returncode != 0
    assert capsys.readouterr().err == f"qsup: error: no task {missing}\n"


def test_a_worker_forgets_the_connections_it_inherited(shop: str) -> None:
    connection = connections["default"]
    connection.ensure_connection()
    inherited = connection.connection
    runtime.DjangoConnections()  # what each worker makes after the fork
    assert connection.connection is None  # the next query connects afresh
    assert not inherited.closed and inherited in runtime._abandoned  # no write to its socket
    runtime._abandoned.remove(inherited)
    inherited.close()
    assert Order.objects.count() == 0


def test_qsup_without_django_imports_no_django() -> None:
    code = (
        "import sys, qsup, qsup.cli, qsup.cli.serve_cmd, qsup.server, qsup.api, qsup.django;"
        " assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
