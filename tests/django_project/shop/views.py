"""Views that enqueue in the request's database transaction (docs/django.md)."""

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from proj.jobs import Receipt, send_receipt

from shop.models import Order

ENQUEUED: list[str] = []


class Abandoned(Exception):
    """Raised inside the transaction to roll it back, with the job id it enqueued."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


def create_order(request: HttpRequest) -> JsonResponse:
    """The explicit form: `transaction.atomic()` around the order and its receipt job.
    `?fail=1` raises after both, so both are rolled back."""
    try:
        with transaction.atomic():
            order = Order.objects.create(item=request.POST.get("item", "book"))
            job_id = send_receipt.enqueue_sync(Receipt(order=order.pk), connection=connection)
            if request.GET.get("fail"):
                raise Abandoned(job_id)
    except Abandoned as abandoned:
        return JsonResponse({"job_id": abandoned.job_id, "committed": False})
    return JsonResponse({"job_id": job_id, "order": order.pk, "committed": True})


def create_order_in_request(request: HttpRequest) -> JsonResponse:
    """With ATOMIC_REQUESTS the request is the transaction. `?fail=1` fails the request after
    enqueueing (Django answers 500 and rolls back); every id enqueued goes to ENQUEUED, which
    the driver, in the same process, reads."""
    order = Order.objects.create(item="pen")
    job_id = send_receipt.enqueue_sync(Receipt(order=order.pk), connection=connection)
    ENQUEUED.append(job_id)
    if request.GET.get("fail"):
        raise RuntimeError("the request fails after enqueueing")
    return JsonResponse({"job_id": job_id, "order": order.pk, "committed": True})
