"""The repairs: retry a failed job, cancel a pending or running one, enable or disable a
schedule; and logging in to make them. POST only, each checked by the `Guard` (token, CSRF,
same origin). A browser form is answered with a redirect back to the page it came from
(post/redirect/get) carrying a short notice; a script (`Authorization: Bearer`) gets JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from timecrisis.dashboard._dashboard import NOTICES, Dashboard, root_path
from timecrisis.dashboard._security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    local_path,
    refuse_cross_site,
)
from timecrisis.errors import JobValidationError

MAX_FORM_BYTES = 16 * 1024  # the forms hold a token, a CSRF value and a path: never more


class FormError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


async def read_fields(request: Request, max_bytes: int = MAX_FORM_BYTES) -> dict[str, list[str]]:
    """An `application/x-www-form-urlencoded` body, every value of each field. (Parsed here:
    Starlette's form parser needs python-multipart, a dependency these tiny forms don't.)"""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise FormError(415, "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise FormError(413, "form too large")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise FormError(400, "the form is not UTF-8") from None


async def read_form(request: Request) -> dict[str, str]:
    """`read_fields`, first value of each field: every form but the bulk one sends one each."""
    return {name: values[0] for name, values in (await read_fields(request)).items()}


def refusal_status(refusal: str) -> int:
    """401 when the client has to log in, 403 when it may not do this at all."""
    return 401 if "log in" in refusal else 403


def back_with(request: Request, form: dict[str, str], params: dict[str, str]) -> Response:
    """Post/redirect/get: back to the form's page (`next`, if it is inside the dashboard)
    with `params` (a notice code and its numbers) in the query."""
    root = root_path(request)
    back = local_path(form.get("next"), root, f"{root}/")
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}{urlencode(params)}", status_code=303)


Act = Callable[[Dashboard, Request], Awaitable[str]]
"""An action: it returns the code of its outcome, a key of `NOTICES`."""


async def _retry(dash: Dashboard, request: Request) -> str:
    job_id = request.path_params["job_id"]
    if await dash.scheduler.retry_job(job_id):
        return "retried"
    return "not-retried" if await _job_exists(dash, job_id) else "no-job"


async def _cancel(dash: Dashboard, request: Request) -> str:
    job_id = request.path_params["job_id"]
    if await dash.scheduler.cancel_job(job_id):
        return "canceled"
    return "not-canceled" if await _job_exists(dash, job_id) else "no-job"


async def _job_exists(dash: Dashboard, job_id: str) -> bool:
    """Asked only after a refusal, to tell "no such job" (404) from "not now" (409)."""
    return await dash.scheduler.get_job(job_id) is not None


async def _enable(dash: Dashboard, request: Request) -> str:
    done = await dash.scheduler.enable_scheduled_job(request.path_params["name"])
    return "enabled" if done else "no-schedule"


async def _disable(dash: Dashboard, request: Request) -> str:
    done = await dash.scheduler.disable_scheduled_job(request.path_params["name"])
    return "disabled" if done else "no-schedule"


async def _pause(dash: Dashboard, request: Request) -> str:
    return await _flip(dash.scheduler.pause, request, ("paused", "already-paused"))


async def _resume(dash: Dashboard, request: Request) -> str:
    return await _flip(dash.scheduler.resume, request, ("resumed", "not-paused"))


async def _flip(
    call: Callable[[str], Awaitable[bool]], request: Request, outcomes: tuple[str, str]
) -> str:
    """Pause or resume the type or queue in the path: `outcomes` is (changed, already so)."""
    try:
        changed = await call(request.path_params["name"])
    except JobValidationError:
        return "bad-name"
    return outcomes[0] if changed else outcomes[1]


ACTIONS: dict[str, Act] = {
    "retry": _retry,
    "cancel": _cancel,
    "enable": _enable,
    "disable": _disable,
    "pause": _pause,
    "resume": _resume,
}
DONE = frozenset({"retried", "canceled", "enabled", "disabled", "paused", "resumed"})
MISSING = frozenset({"no-job", "no-schedule", "bad-name"})


async def act(dash: Dashboard, request: Request, action: str) -> Response:
    try:
        form = await read_form(request)
    except FormError as error:
        return refused(dash, request, error.status_code, error.message)
    refusal = dash.guard.refuse_action(request, form.get(CSRF_FIELD))
    if refusal is not None:
        return refused(dash, request, refusal_status(refusal), refusal)
    outcome = await ACTIONS[action](dash, request)
    done = outcome in DONE
    if dash.guard.has_bearer(request):
        return JSONResponse(
            {"ok": done, "message": NOTICES[outcome]},
            status_code=200 if done else 404 if outcome in MISSING else 409,
        )
    return back_with(request, form, {"notice": outcome})


def refused(dash: Dashboard, request: Request, status_code: int, message: str) -> Response:
    if request.headers.get("authorization"):
        return JSONResponse({"ok": False, "message": message}, status_code=status_code)
    return dash.render(request, "error.html", status_code=status_code, message=message)


async def login_page(dash: Dashboard, request: Request) -> Response:
    if not dash.guard.actions_enabled:
        return dash.render(
            request, "error.html", status_code=404, message="this dashboard is read-only"
        )
    return dash.render(
        request, "login.html", failed=False, next=request.query_params.get("next", "")
    )


async def login(dash: Dashboard, request: Request) -> Response:
    if not dash.guard.actions_enabled:
        return dash.render(
            request, "error.html", status_code=404, message="this dashboard is read-only"
        )
    try:
        form = await read_form(request)
    except FormError as error:
        return refused(dash, request, error.status_code, error.message)
    cross_site = refuse_cross_site(request)
    if cross_site is not None:
        return refused(dash, request, 403, cross_site)
    if not dash.guard.token_matches(form.get("token", "")):
        return dash.render(
            request, "login.html", status_code=403, failed=True, next=form.get("next", "")
        )
    root = root_path(request)
    response = RedirectResponse(local_path(form.get("next"), root, f"{root}/"), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        dash.guard.session_value,
        path=f"{root}/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(dash: Dashboard, request: Request) -> Response:
    cross_site = refuse_cross_site(request)
    if cross_site is not None:
        return refused(dash, request, 403, cross_site)
    root = root_path(request)
    response = RedirectResponse(f"{root}/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=f"{root}/", httponly=True, samesite="strict")
    return response
