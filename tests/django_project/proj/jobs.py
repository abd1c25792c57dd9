"""The project's scheduler, as docs/django.md writes it: its store is the Django database."""

from pydantic import BaseModel

from timecrisis import JobContext, JobScheduler
from timecrisis.contrib.django import storage_from_settings

# The library's defaults, as a project would write it: the worker test runs at them.
scheduler = JobScheduler(storage_from_settings())


class Receipt(BaseModel):
    order: int


@scheduler.job("send-receipt", concurrency=None)
def send_receipt(data: Receipt, ctx: JobContext) -> str:
    # A plain `def` handler runs in a worker thread, where the ORM may be used as in a view.
    from shop.models import Order

    Order.objects.filter(pk=data.order).update(receipt_sent=True)
    return f"receipt for order {data.order}"
