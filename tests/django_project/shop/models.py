from django.db import models


class Order(models.Model):  # type: ignore[misc]  # Django ships no type hints
    item = models.CharField(max_length=100)
    receipt_sent = models.BooleanField(default=False)

    class Meta:
        app_label = "shop"
