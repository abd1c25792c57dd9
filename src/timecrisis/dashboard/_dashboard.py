"""The state every route shares, and how a page is rendered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from timecrisis.dashboard._format import FILTERS, relative
from timecrisis.dashboard._security import CSRF_FIELD, Guard
from timecrisis.dashboard._shared import SharedRead
from timecrisis.scheduler import JobScheduler
from timecrisis.storage.base import JobStorage

NOTICES = {
    "retried": "job retried",
    "not-retried": "not retried: only a failed or canceled job can be",
    "canceled": "cancel requested",
    "not-canceled": "not canceled: the job has already finished",
    "enabled": "schedule enabled",
    "disabled": "schedule disabled",
    "no-schedule": "no such schedule",
    "no-job": "no such job",
    "paused": "paused: no node claims its jobs until it is resumed (running jobs finish)",
    "already-paused": "already paused",
    "resumed": "resumed: its due jobs start now",
    "not-paused": "not paused",
    "bad-name": "no job type or queue can have that name",
}
"""What an action reports after its redirect (`?notice=retried`). A code, not the text itself:
a crafted link cannot make the dashboard display words of someone else's choosing."""

BULK_RETRIED = "bulk-retried"
"""The notice of "retry all shown": its numbers come in the query too (`retried`, `of`), read
as small integers only, so a crafted link can at most show a wrong count."""
MAX_PAGE_SIZE = 1000
"""The largest `page_size`: also the most jobs one "retry all shown" takes, and so the largest
count its notice shows."""


def notice_text(params: Mapping[str, str]) -> str | None:
    code = params.get("notice", "")
    if code != BULK_RETRIED:
        return NOTICES.get(code)
    retried, asked = _count(params.get("retried")), _count(params.get("of"))
    if retried is None or asked is None or retried > asked:
        return None
    if retried == asked:
        return f"{jobs_text(retried)} retried"
    return (
        f"{retried} of {jobs_text(asked)} retried: the other {asked - retried} were no longer "
        "failed or canceled (retried or purged meanwhile)"
    )


def jobs_text(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def _count(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 4:
        return None
    number = int(value)
    return number if number <= MAX_PAGE_SIZE else None


FRAGMENT_HEADER = "x-timecrisis-fragment"
"""Sent by the page's script when it refreshes a live region: the route renders that region
only (the same template, the same escaping), not the whole page."""


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("timecrisis.dashboard", "templates"),
        # Every template is HTML: escape everything, whatever the file name says. Payloads,
        # results, errors and log lines are user data and show as text.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals["relative"] = relative
    return env


@dataclass(frozen=True, slots=True)
class Settings:
    title: str
    refresh_seconds: float
    page_size: int


class Dashboard:
    def __init__(
        self,
        scheduler: JobScheduler,
        guard: Guard,
        settings: Settings,
        env: jinja2.Environment,
    ) -> None:
        self.scheduler = scheduler
        self.guard = guard
        self.settings = settings
        self.env = env
        # The overview's counts: the one read of a whole table, shared by every open tab.
        self.metrics = SharedRead(
            lambda: self.storage.get_metrics(), max_age=settings.refresh_seconds
        )

    @property
    def storage(self) -> JobStorage:
        return self.scheduler.storage

    def render(
        self,
        request: Request,
        template: str,
        *,
        fragment: str | None = None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """Render `template`, or only `fragment` (a template of the live region) when the
        page's script asks for it."""
        name = fragment if fragment and request.headers.get(FRAGMENT_HEADER) else template
        root = root_path(request)
        html = self.env.get_template(name).render(
            request=request,
            root=root,
            path=request.url.path,
            here=_here(request),
            title=self.settings.title,
            refresh_seconds=self.settings.refresh_seconds,
            actions_enabled=self.guard.actions_enabled,
            can_act=self.guard.can_act(request),
            csrf_field=CSRF_FIELD,
            csrf=self.guard.csrf_value if self.guard.can_act(request) else "",
            notice=notice_text(request.query_params),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)


def root_path(request: Request) -> str:
    """Where the dashboard is mounted ('' at the root): every link starts with it."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _here(request: Request) -> str:
    """This page's path and query, without a notice: where an action sends the browser back."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "notice"]
    query = urlencode(params)
    return request.url.path + (f"?{query}" if query else "")
