"""`manage.py timecrisis ARGS`: the `timecrisis` command line, with the project's defaults.

ARGS go to the click CLI unchanged. What the project's settings add, as click defaults (so the
command line, `timecrisis --storage URL` and $TIMECRISIS_STORAGE still win, in that order):

- `worker` runs `TIMECRISIS["SCHEDULER"]` when no TARGET is given, on the scheduler's own store;
- every other command that opens a store opens the scheduler's (or, without a SCHEDULER
  setting, `storage_from_settings()`'s), found only when the command needs it.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click

from timecrisis.contrib.django import (
    SETTING,
    storage_from_settings,
    storage_url,
    timecrisis_settings,
)

# Django's own options, already applied by manage.py before it calls the command.
_DJANGO_OPTIONS = ("--settings", "--pythonpath")


def run(args: list[str], prog_name: str) -> NoReturn:
    """Run the `timecrisis` CLI on `args` and exit with its status."""
    from timecrisis.cli import cli
    from timecrisis.cli._errors import run_cli

    run_cli(cli, _without_django_options(args), prog_name=prog_name, default_map=defaults())


def defaults() -> dict[str, Any]:
    """The click `default_map` for the whole command tree (see the module's docstring)."""
    target = timecrisis_settings().get("SCHEDULER")
    worker: dict[str, Any] = {} if target is None else {"target": target}
    return _Defaults({"worker": worker}, fallback=_Defaults({"storage_url": _default_url}))


class _Defaults(dict[str, Any]):
    """A default map whose unknown subcommands get `fallback` (or this map itself): click looks
    a subcommand's defaults up with `.get(name)`, and every command below `jobs`, `schedules`,
    ... takes the same `--storage`. The root holds no `storage_url`, so the group-level
    `--storage` stays unset and a worker keeps its scheduler's store."""

    def __init__(self, values: dict[str, Any], fallback: _Defaults | None = None) -> None:
        super().__init__(values)
        self._fallback = fallback

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return self._fallback if self._fallback is not None else self


def _default_url() -> str:
    """The store of the configured scheduler, as a URL (click calls this only when a command
    needs a store and none was given)."""
    target = timecrisis_settings().get("SCHEDULER")
    if target is None:
        return _url_of(storage_from_settings(), "storage_from_settings()")
    from timecrisis.cli._target import load_scheduler

    try:
        scheduler = load_scheduler(target)
    except click.BadParameter as error:
        raise click.UsageError(f"settings.{SETTING}['SCHEDULER']: {error.message}") from None
    return _url_of(scheduler.storage, target)


def _url_of(storage: Any, where: str) -> str:
    url = storage_url(storage)
    if url is None:
        raise click.UsageError(
            f"cannot tell which store to open: {where} uses {storage!r}; give --storage URL, "
            "or build the scheduler's store with storage_from_settings()"
        )
    return url


def _without_django_options(args: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _DJANGO_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in _DJANGO_OPTIONS)):
            kept.append(arg)
    return kept
