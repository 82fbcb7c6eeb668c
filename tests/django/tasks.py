"""Tasks only the tests need, and receivers that write Django's task signals to a file."""

import os
import time
from typing import Any

import django
from django.dispatch import receiver
from django.tasks import TaskContext, task
from django.tasks.signals import task_finished, task_started
from orders.models import Order


@task(takes_context=True)
def stall_first(context: TaskContext, order_id: int, seconds: float) -> int:
    """The first attempt stalls (the test kills its worker); a later one packs the order."""
    if context.attempt == 1:
        Order.objects.filter(pk=order_id).update(status="stalling")
        time.sleep(seconds)
    Order.objects.filter(pk=order_id).update(status="packed")
    return int(context.attempt)


@task
def nap(seconds: float) -> None:
    time.sleep(seconds)


@task
def labelled(order_id: int, **labels: str) -> dict[str, str]:
    """Takes any keyword, those starting with "_" too (they are no qsup option here)."""
    return labels


@task(backend="immediate")
def elsewhere_only() -> str:
    return "ran in the caller"


if django.VERSION >= (6, 1):  # @task takes a backend's own options from Django 6.1 on

    @task(timeout=0.3, max_retries=0, unique_key=lambda seconds: f"nap-{seconds}")
    def short_nap(seconds: float) -> None:
        time.sleep(seconds)


def _record(kind: str, task_result: Any) -> None:
    path = os.environ.get("QSUP_TEST_SIGNALS")
    if path:
        with open(path, "a") as out:
            value = task_result.return_value if task_result.status == "SUCCESSFUL" else "-"
            out.write(
                f"{kind} {task_result.id} {task_result.status} {task_result.attempts} {value}\n"
            )


@receiver(task_started)
def started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("started", task_result)


@receiver(task_finished)
def finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("finished", task_result)
