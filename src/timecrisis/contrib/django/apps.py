"""The Django app: listing `timecrisis.contrib.django` in INSTALLED_APPS makes `manage.py
timecrisis` available."""

from __future__ import annotations

from django.apps import AppConfig


class TimecrisisConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    name = "timecrisis.contrib.django"
    # Not "django" (the last part of the name, Django's default label): that would read as
    # Django itself in migrations and error messages.
    label = "timecrisis"
    verbose_name = "timecrisis"
