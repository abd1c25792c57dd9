"""A minimal Django project on PostgreSQL for tests/django/: everything in the schema
$TC_DJANGO_SCHEMA (Django's tables through the connection's search_path, timecrisis's through
TIMECRISIS["SCHEMA"]), so parallel test runs never meet. $TC_DJANGO_ATOMIC_REQUESTS=1 wraps
every request in a transaction."""

import os
from urllib.parse import urlsplit

_url = urlsplit(
    os.environ.get("TIMECRISIS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
)
SCHEMA = os.environ["TC_DJANGO_SCHEMA"]

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "proj.urls"
INSTALLED_APPS = ["timecrisis.contrib.django", "shop"]
MIDDLEWARE: list[str] = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _url.path.lstrip("/"),
        "USER": _url.username or "",
        "PASSWORD": _url.password or "",
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
        "OPTIONS": {"options": f"-c search_path={SCHEMA}"},
        "ATOMIC_REQUESTS": os.environ.get("TC_DJANGO_ATOMIC_REQUESTS") == "1",
    }
}
TIMECRISIS = {"SCHEDULER": "proj.jobs:scheduler", "SCHEMA": SCHEMA}
