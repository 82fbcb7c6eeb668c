"""The shop's tasks: plain Django ``@task`` functions, run by ``qsup serve``."""

from django.db.models import F
from django.tasks import TaskContext, task

from orders.models import Order


class PaymentDeclined(Exception):
    pass


@task
def fulfil(order_id: int) -> str:
    """Runs after the view's transaction commits: the order it reads exists."""
    Order.objects.filter(pk=order_id).update(status="fulfilled")
    return Order.objects.get(pk=order_id).status


@task
def charge(order_id: int, cents: int) -> None:
    """Always declined: FAILED, with the exception's class path and traceback per attempt."""
    raise PaymentDeclined(f"order {order_id}: card declined for {cents} cents")


@task(takes_context=True, queue_name="mail")
def remind(context: TaskContext, order_id: int) -> int:
    """Enqueued with ``.using(run_after=...)``; returns which attempt ran it."""
    Order.objects.filter(pk=order_id).update(reminders=F("reminders") + 1)
    return int(context.attempt)


@task(priority=50)
def ship_express(order_id: int) -> str:
    """Prioritised: runs before the default priority's tasks waiting with it."""
    Order.objects.filter(pk=order_id).update(status="express")
    return "express"


@task
async def audit(order_id: int) -> str:
    """An async task using the async ORM."""
    order = await Order.objects.aget(pk=order_id)
    return f"{order.item}: {order.status}"
