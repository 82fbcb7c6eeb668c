"""The shop's tasks under a real ``qsup serve`` with Django set up: the ORM in sync and async
tasks, failures, deferral, priority, a SIGKILLed worker, ``manage.py qsup``."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.tasks import TaskResultStatus
from django.test import Client
from orders.models import Order
from orders.tasks import audit, charge, fulfil, remind, ship_express

from tests.conftest import wait_for
from tests.django.conftest import SHOP, refreshed
from tests.django.tasks import nap, stall_first
from tests.servers import Server

SUCCESSFUL, FAILED = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED


def finished(result: Any, timeout: float = 30) -> Any:
    return wait_for(lambda: refreshed(result).is_finished and result, timeout, what="the task")


def test_a_view_commits_an_order_and_its_task_which_updates_it(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    serve("--workers", "1")
    response = Client().post("/orders", {"item": "book"})
    assert response.status_code == 201, response.content
    placed = response.json()
    result = finished(fulfil.get_result(placed["task"]))
    assert (result.status, result.return_value) == (SUCCESSFUL, "fulfilled")
    assert Order.objects.get(pk=placed["order"]).status == "fulfilled"  # seen by the caller
    assert len(result.worker_ids) == 1 and result.errors == []
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    status = Client().get(f"/tasks/{placed['task']}").json()
    assert status == {"status": "SUCCESSFUL", "return_value": "fulfilled"}
    signals = (tmp_path / "signals").read_text().split("\n")
    assert signals[:2] == [
        f"started {result.id} RUNNING 1 -",
        f"finished {result.id} SUCCESSFUL 1 fulfilled",
    ]


def test_a_failing_task_is_failed_with_each_attempts_class_path_and_traceback(
    serve: Callable[..., Server],
) -> None:
    serve("--workers", "1")
    result = finished(charge.enqueue(7, 500))
    assert result.status == FAILED
    assert len(result.worker_ids) == 2  # OPTIONS max_retries=1: two attempts
    assert [e.exception_class_path for e in result.errors] == ["orders.tasks.PaymentDeclined"] * 2
    for error in result.errors:
        assert error.traceback.startswith("Traceback (most recent call last):")
        assert "PaymentDeclined: order 7: card declined for 500 cents" in error.traceback
        assert 'orders/tasks.py", line' in error.traceback
    assert result.errors[0].exception_class.__name__ == "PaymentDeclined"


def test_an_overrun_is_failed_as_a_timeout(serve: Callable[..., Server]) -> None:
    # --django names the settings (over the environment's)
    serve("--workers", "1", "--django", "tests.django.settings",
          env={"DJANGO_SETTINGS_MODULE": "no_such.settings"})  # fmt: skip
    result = finished(dataclasses.replace(nap, timeout=0.3, max_retries=0).enqueue(30))
    assert result.status == FAILED and len(result.worker_ids) == 1
    assert [e.exception_class_path for e in result.errors] == ["qsup.errors.TaskTimeout"]


def test_deferred_stays_ready_and_priority_runs_first(serve: Callable[..., Server]) -> None:
    plain, express, later = (Order.objects.create(item=i) for i in ("a", "b", "c"))
    deferred = remind.using(run_after=datetime.now(UTC) + timedelta(hours=1)).enqueue(later.id)
    first = fulfil.enqueue(plain.id)
    urgent = ship_express.enqueue(express.id)  # enqueued last, priority 50
    serve("--workers", "1")
    first, urgent = finished(first), finished(urgent)
    assert (first.status, urgent.status) == (SUCCESSFUL, SUCCESSFUL)
    assert urgent.finished_at <= first.started_at
    assert refreshed(deferred).status == TaskResultStatus.READY
    assert Order.objects.get(pk=later.id).reminders == 0


def test_async_tasks_and_the_task_context(serve: Callable[..., Server]) -> None:
    order = Order.objects.create(item="lamp")
    audited, reminded = audit.enqueue(order.id), remind.enqueue(order.id)
    serve("--workers", "2")
    assert (finished(audited).status, audited.return_value) == (SUCCESSFUL, "lamp: new")
    assert (finished(reminded).status, reminded.return_value) == (SUCCESSFUL, 1)
    assert reminded.task.queue_name == "mail"
    assert Order.objects.get(pk=order.id).reminders == 1


def test_a_sigkilled_workers_task_runs_again_and_succeeds(serve: Callable[..., Server]) -> None:
    server = serve("--workers", "1")
    order = Order.objects.create(item="vase")
    result = stall_first.enqueue(order.id, 60)
    wait_for(lambda: Order.objects.get(pk=order.id).status == "stalling", what="the first try")
    running = TaskResultStatus.RUNNING  # once the supervisor wrote the start down
    wait_for(lambda: refreshed(result).status == running, what="RUNNING")
    (worker,) = server.workers()
    worker.send_signal(signal.SIGKILL)
    result = finished(result)
    assert (result.status, result.return_value) == (SUCCESSFUL, 2)
    assert Order.objects.get(pk=order.id).status == "packed"
    assert len(result.worker_ids) == 2 and result.worker_ids[0] != result.worker_ids[1]
    assert [e.exception_class_path for e in result.errors] == ["qsup.django.errors.WorkerDied"]
    assert "SIGKILL" in result.errors[0].traceback


def _manage(*args: str, db_url: str, **kwargs: Any) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env |= {"SHOP_DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "shop.settings"}
    env["PYTHONPATH"] = os.pathsep.join([str(SHOP), env.get("PYTHONPATH", "")])
    command = [sys.executable, "manage.py", "qsup", *args]
    return command, {"cwd": SHOP, "env": env, **kwargs}


def test_manage_py_qsup_serves_with_the_projects_database(shop: str, tmp_path: Path) -> None:
    order = Order.objects.create(item="desk")
    result = fulfil.enqueue(order.id)
    log = tmp_path / "manage.log"
    command, options = _manage("serve", "--no-http", "--workers", "1", db_url=shop)
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **options)
    try:
        assert finished(result).status == SUCCESSFUL, log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    command, options = _manage("task", "show", result.id, "--json", db_url=shop)
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60, **options)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "completed"


def test_a_settings_module_that_does_not_load_is_a_one_line_error(shop: str) -> None:
    command = [sys.executable, "-m", "qsup", "serve", "--no-http", "--django", "no_such.settings"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("qsup: error: django: 'no_such.settings': ModuleNotFoundError")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
