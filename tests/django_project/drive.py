"""Drives the project's views with Django's test client, in a process of its own (Django's
settings are process-global): `python drive.py`, with DJANGO_SETTINGS_MODULE and the test
schema in the environment. Prints one JSON object: what each request answered."""

import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402
from shop import views  # noqa: E402


def main() -> None:
    client = Client(raise_request_exception=False)
    answers: dict[str, object] = {}
    if settings.DATABASES["default"]["ATOMIC_REQUESTS"]:
        kept = client.post("/orders-in-request")
        failed = client.post("/orders-in-request?fail=1")
        answers["kept"] = kept.json()["job_id"]
        answers["failed_status"] = failed.status_code
        answers["lost"] = views.ENQUEUED[-1]
    else:
        answers["kept"] = client.post("/orders", {"item": "book"}).json()
        answers["lost"] = client.post("/orders?fail=1", {"item": "lamp"}).json()
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
