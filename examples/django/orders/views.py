from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.tasks import default_task_backend
from django.views.decorators.http import require_POST

from orders.models import Order
from orders.tasks import fulfil


@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    """The order and its task commit together, or neither does."""
    with transaction.atomic():
        order = Order.objects.create(item=request.POST["item"])
        result = fulfil.enqueue(order.id)
    return JsonResponse({"order": order.id, "task": result.id}, status=201)


def task_status(request: HttpRequest, task_id: str) -> JsonResponse:
    result = default_task_backend.get_result(task_id)
    value = result.return_value if result.status == "SUCCESSFUL" else None
    return JsonResponse({"status": result.status, "return_value": value})
