"""The read-only pages. Each reads what it shows with a few bounded store calls: lists are
keyset pages (`list_jobs` with a cursor), never counts of a whole table, except the overview's
`get_metrics`, which the store computes with one aggregate and every open tab shares."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from timecrisis._bounds import lookup_key, text_problem
from timecrisis.dashboard._chart import MINUTE, build_chart, window
from timecrisis.dashboard._dashboard import Dashboard, root_path
from timecrisis.dashboard._flow import flow_rows
from timecrisis.dashboard._format import cancel_requested
from timecrisis.dashboard._metrics import CONTENT_TYPE, exposition, read_snapshot
from timecrisis.dashboard._stats import summarise
from timecrisis.errors import InvalidScheduleError
from timecrisis.models import FINISHED_STATUSES, Job, JobStatus, ScheduledJob
from timecrisis.schedules import preview_schedule
from timecrisis.storage.base import LEADER_LOCK, JobQuery

RUNNING_ON_OVERVIEW = 20
RUNNING_ON_WORKERS = 500  # running jobs are bounded by the cluster's slots: one page holds them
LOG_LINES = 500  # a job page shows its latest log lines; older ones stay in the store
NEXT_FIRES = 5
JOB_STATUSES = [status.value for status in JobStatus]


async def overview(dash: Dashboard, request: Request) -> Response:
    storage = dash.storage
    now = await storage.now()
    since = window(now)
    metrics, finished, running, leader, workers = await asyncio.gather(
        dash.metrics.get(),
        storage.count_finished_jobs(since, MINUTE),
        storage.list_jobs(JobQuery(status=JobStatus.RUNNING, limit=RUNNING_ON_OVERVIEW)),
        storage.get_lock(LEADER_LOCK),
        storage.list_workers(),
    )
    return dash.render(
        request,
        "overview.html",
        fragment="_overview_live.html",
        now=now,
        metrics=metrics,
        statuses=JOB_STATUSES,
        chart=build_chart(finished, since),
        running=running,
        running_limit=RUNNING_ON_OVERVIEW,
        leader=leader,
        workers=workers,
    )


@dataclass(frozen=True, slots=True)
class JobFilters:
    status: JobStatus | None
    type: str | None
    entity_id: str | None
    cursor: str | None

    def url(self, root: str, *, cursor: str | None) -> str:
        params = {
            "status": self.status.value if self.status else None,
            "type": self.type,
            "entity_id": self.entity_id,
            "cursor": cursor,
        }
        query = urlencode({k: v for k, v in params.items() if v})
        return f"{root}/jobs" + (f"?{query}" if query else "")


def _text_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


async def _page(
    dash: Dashboard, read: Callable[[int], Awaitable[list[Job]]]
) -> tuple[list[Job], bool]:
    """One page of jobs and whether a next page exists: `read(limit)` is asked for one row
    more than a page, and that extra row, if it comes, is the answer."""
    size = dash.settings.page_size
    page = await read(size + 1)
    return page[:size], len(page) > size


async def jobs(dash: Dashboard, request: Request) -> Response:
    raw_status = _text_param(request, "status")
    if raw_status is not None and raw_status not in JOB_STATUSES:
        return dash.render(
            request,
            "error.html",
            status_code=400,
            message=f"unknown status {raw_status!r}: choose among {', '.join(JOB_STATUSES)}",
        )
    filters = JobFilters(
        status=JobStatus(raw_status) if raw_status else None,
        type=_text_param(request, "type"),
        entity_id=_text_param(request, "entity_id"),
        cursor=_text_param(request, "cursor"),
    )
    # Through the scheduler: a filter or cursor no job can have (a NUL...) is an empty page.
    rows, more = await _page(
        dash,
        lambda limit: dash.scheduler.list_jobs(
            status=filters.status,
            type=filters.type,
            entity_id=filters.entity_id,
            limit=limit,
            cursor=filters.cursor,
        ),
    )
    root = root_path(request)
    return dash.render(
        request,
        "jobs.html",
        jobs=rows,
        filters=filters,
        statuses=JOB_STATUSES,
        next_url=filters.url(root, cursor=rows[-1].id) if more else None,
        first_url=filters.url(root, cursor=None) if filters.cursor else None,
    )


async def job(dash: Dashboard, request: Request) -> Response:
    job_id = request.path_params["job_id"]
    if lookup_key(job_id) is None:  # an id no store can hold (a NUL...): no such job, not a 503
        return dash.render(request, "error.html", status_code=404, message="no job with this id")
    storage = dash.storage
    record, runs, logs, now = await asyncio.gather(
        storage.get_job(job_id),
        storage.get_job_runs(job_id),
        storage.get_job_logs(job_id),
        storage.now(),
    )
    if record is None:
        return dash.render(request, "error.html", status_code=404, message="no job with this id")
    return dash.render(
        request,
        "job.html",
        fragment="_job_live.html",
        job=record,
        runs=runs,
        # The latest traceback is unfolded, as it is what a reader came for; older ones fold.
        latest_traceback=next((r.id for r in reversed(runs) if r.traceback), None),
        logs=logs[-LOG_LINES:],
        hidden_logs=max(0, len(logs) - LOG_LINES),
        now=now,
        live=record.status not in FINISHED_STATUSES,
        can_retry=record.status in (JobStatus.FAILED, JobStatus.CANCELED),
        # Asked once is enough: a second request changes nothing (cancel is final).
        can_cancel=record.status in (JobStatus.PENDING, JobStatus.RUNNING)
        and not cancel_requested(record),
    )


async def dead_letters(dash: Dashboard, request: Request) -> Response:
    cursor = _text_param(request, "cursor")
    rows, more = await _page(
        dash, lambda limit: dash.scheduler.list_dead_letters(limit=limit, cursor=cursor)
    )
    root = root_path(request)
    return dash.render(
        request,
        "dead_letters.html",
        jobs=rows,
        next_url=f"{root}/dead-letters?{urlencode({'cursor': rows[-1].id})}" if more else None,
        first_url=f"{root}/dead-letters" if cursor else None,
    )


async def search(dash: Dashboard, request: Request) -> Response:
    """The frame's search box: an exact job id goes to that job's page (303, so the address
    bar shows where the job lives); an unknown id is a 404 page saying so, input no id can be
    a 400 saying why. Surrounding blanks are dropped: a pasted id often carries them."""
    wanted = request.query_params.get("id", "").strip()
    if not wanted:
        return dash.render(
            request, "error.html", status_code=400, message="type a job id to search for"
        )
    problem = text_problem(wanted)
    if problem is not None:  # no store could hold such an id (a NUL, over 1 KiB...)
        return dash.render(
            request, "error.html", status_code=400, message=f"not a job id: it {problem}"
        )
    if await dash.scheduler.get_job(wanted) is None:
        return dash.render(
            request,
            "error.html",
            status_code=404,
            message=f"no job with id {wanted!r}",
            searched=wanted,
        )
    return RedirectResponse(f"{root_path(request)}/jobs/{quote(wanted, safe='')}", status_code=303)


@dataclass(frozen=True, slots=True)
class ScheduleView:
    schedule: ScheduledJob
    next_fires: list[datetime]
    problem: str | None


def _next_fires(schedule: ScheduledJob) -> ScheduleView:
    """The stored next fire time, then the ones after it as the scheduler will compute them
    (`preview_schedule` from that time: cron and exact as they fire, intervals at fixed rate)."""
    if schedule.next_run_at is None:
        return ScheduleView(schedule, [], None)
    try:
        later = preview_schedule(
            schedule.schedule_type,
            schedule.schedule_value,
            time_zone=schedule.time_zone,
            after=schedule.next_run_at,
            count=NEXT_FIRES - 1,
        )
    except InvalidScheduleError as error:
        return ScheduleView(schedule, [schedule.next_run_at], str(error))
    return ScheduleView(schedule, [schedule.next_run_at, *later], None)


async def schedules(dash: Dashboard, request: Request) -> Response:
    listed, now = await asyncio.gather(dash.storage.list_schedules(), dash.storage.now())
    return dash.render(
        request, "schedules.html", schedules=[_next_fires(s) for s in listed], now=now
    )


async def workers(dash: Dashboard, request: Request) -> Response:
    storage = dash.storage
    listed, leader, running, now = await asyncio.gather(
        storage.list_workers(),
        storage.get_lock(LEADER_LOCK),
        storage.list_jobs(JobQuery(status=JobStatus.RUNNING, limit=RUNNING_ON_WORKERS)),
        storage.now(),
    )
    by_worker: dict[str, list[Job]] = defaultdict(list)
    for record in running:
        by_worker[record.worker or "?"].append(record)
    return dash.render(
        request,
        "workers.html",
        fragment="_workers_live.html",
        workers=listed,
        leader=leader,
        by_worker=by_worker,
        running_total=len(running),
        running_limit=RUNNING_ON_WORKERS,
        now=now,
    )


async def stats(dash: Dashboard, request: Request) -> Response:
    snapshot = await read_snapshot(dash.storage)
    definitions = dash.scheduler.job_definitions
    flow = flow_rows(
        types=[*definitions, *snapshot.metrics.types],
        queues=[*(d.queue for d in definitions.values()), *snapshot.metrics.queues],
        paused=snapshot.paused,
    )
    return dash.render(
        request, "stats.html", stats=summarise(snapshot), statuses=JOB_STATUSES, flow=flow
    )


async def metrics(dash: Dashboard, request: Request) -> Response:
    snapshot = await read_snapshot(dash.storage)
    return Response(exposition(snapshot), media_type=CONTENT_TYPE)


async def not_found(dash: Dashboard, request: Request) -> HTMLResponse:
    return dash.render(request, "error.html", status_code=404, message="no such page")
