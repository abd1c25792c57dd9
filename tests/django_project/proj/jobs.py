"""The project's scheduler, as docs/django.md writes it: its store is the Django database."""

from pydantic import BaseModel

from timecrisis import JobContext, JobScheduler
from timecrisis.contrib.django import storage_from_settings

# A short poll interval: the worker test waits for the job (LISTEN/NOTIFY wakes it anyway).
scheduler = JobScheduler(storage_from_settings(), job_processing_interval=0.5)


class Receipt(BaseModel):
    order: int


@scheduler.job("send-receipt", concurrency=None)
def send_receipt(data: Receipt, ctx: JobContext) -> str:
    # A plain `def` handler runs in a worker thread, where the ORM may be used as in a view.
    from shop.models import Order

    Order.objects.filter(pk=data.order).update(receipt_sent=True)
    return f"receipt for order {data.order}"
