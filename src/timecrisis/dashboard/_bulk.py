""" "Retry all shown" on the dead-letter page: the jobs of the page the operator was looking at,
named one by one in the form (not re-read from the store: a dead letter that arrived since is
not on that page, and is not retried).

Two POSTs, both checked by the `Guard` like every action. The first (no `confirm`) changes
nothing and answers with a confirmation page, "Retry 37 jobs?"; its button posts the same ids
again with `confirm=yes`, which retries them and redirects back with how many were. A script
(`Authorization: Bearer`) sends `confirm=yes` at once and gets JSON.

The store has no "retry these ids" call: each id is a `retry_job`, one after the other, so a
thousand of them are a thousand short writes rather than one long transaction that would hold
up the workers' claims."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from timecrisis._bounds import MAX_KEY_BYTES, text_problem
from timecrisis.dashboard._actions import (
    MAX_FORM_BYTES,
    FormError,
    back_with,
    read_fields,
    refusal_status,
    refused,
)
from timecrisis.dashboard._dashboard import (
    BULK_RETRIED,
    Dashboard,
    jobs_text,
    notice_text,
    root_path,
)
from timecrisis.dashboard._security import CSRF_FIELD, local_path

ID_FIELD = "id"
CONFIRM_FIELD = "confirm"


def form_limit(page_size: int) -> int:
    """Room for a page of the longest ids, each percent-encoded (3 bytes a byte at worst)."""
    return MAX_FORM_BYTES + page_size * (3 * MAX_KEY_BYTES + len(f"&{ID_FIELD}="))


def chosen_ids(values: list[str], most: int) -> list[str]:
    """The ids to retry, in the page's order, each once; a `FormError` (400) for a form no
    page of the dashboard would send."""
    ids = list(dict.fromkeys(values))
    if not ids:
        raise FormError(400, "no job to retry: the form names none")
    if len(ids) > most:
        raise FormError(400, f"too many jobs: at most {most} at once (a page of the dashboard)")
    for job_id in ids:
        problem = text_problem(job_id)
        if problem is not None:
            raise FormError(400, f"not a job id: it {problem}")
    return ids


async def retry_shown(dash: Dashboard, request: Request) -> Response:
    most = dash.settings.page_size
    try:
        fields = await read_fields(request, form_limit(most))
    except FormError as error:
        return refused(dash, request, error.status_code, error.message)
    form = {name: values[0] for name, values in fields.items()}
    refusal = dash.guard.refuse_action(request, form.get(CSRF_FIELD))
    if refusal is not None:
        return refused(dash, request, refusal_status(refusal), refusal)
    try:
        ids = chosen_ids(fields.get(ID_FIELD, []), most)
    except FormError as error:
        return refused(dash, request, error.status_code, error.message)
    bearer = dash.guard.has_bearer(request)
    if form.get(CONFIRM_FIELD) != "yes":
        if bearer:
            message = f"add {CONFIRM_FIELD}=yes to retry {jobs_text(len(ids))}"
            return JSONResponse({"ok": False, "message": message}, status_code=400)
        root = root_path(request)
        back = local_path(form.get("next"), root, f"{root}/dead-letters")
        return dash.render(request, "confirm_retry.html", ids=ids, back=back)
    retried = [job_id for job_id in ids if await dash.scheduler.retry_job(job_id)]
    params = {"notice": BULK_RETRIED, "retried": str(len(retried)), "of": str(len(ids))}
    if bearer:
        done = set(retried)
        return JSONResponse(
            {
                "ok": True,
                "message": notice_text(params),
                "retried": retried,
                "not_retried": [job_id for job_id in ids if job_id not in done],
            }
        )
    return back_with(request, form, params)
