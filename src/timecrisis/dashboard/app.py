"""`create_app`: the dashboard as an ASGI application (Starlette), to serve on its own
(`timecrisis dashboard`) or to mount inside an existing FastAPI or Starlette app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from timecrisis.dashboard import _actions, _bulk, _pages
from timecrisis.dashboard._dashboard import MAX_PAGE_SIZE, Dashboard, Settings, make_environment
from timecrisis.dashboard._security import SECURITY_HEADERS, Guard
from timecrisis.errors import StorageError
from timecrisis.scheduler import JobScheduler
from timecrisis.storage.base import JobStorage

STATIC_DIR = Path(__file__).parent / "static"

Handler = Callable[[Dashboard, Request], Awaitable[Response]]


def create_app(
    storage: JobStorage | JobScheduler,
    *,
    actions_enabled: bool = False,
    token: str | None = None,
    title: str = "timecrisis",
    refresh_seconds: float = 2.0,
    page_size: int = 50,
    manage_storage: bool = False,
) -> Starlette:
    """The dashboard over `storage` (a store, or a `JobScheduler` whose store to read; passing
    your scheduler lets a retry wake its worker at once).

    Read-only unless `actions_enabled`, and then every action needs `token` (a `ValueError`
    without one). `refresh_seconds`: how often live regions refresh. `page_size`: rows per
    page of the job lists. `manage_storage=True` initialises the store at startup and closes it
    at shutdown (what `timecrisis dashboard` does); leave it False when you mount the app and
    own the store, as a mounted app's lifespan does not run.
    """
    if refresh_seconds <= 0:
        raise ValueError(f"refresh_seconds must be positive, got {refresh_seconds!r}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size!r}")
    scheduler = storage if isinstance(storage, JobScheduler) else JobScheduler(storage)
    dash = Dashboard(
        scheduler,
        Guard(actions_enabled=actions_enabled, token=token),
        Settings(title=title, refresh_seconds=refresh_seconds, page_size=page_size),
        make_environment(),
    )

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(dash, request)
            except StorageError as error:
                # The store is down or refused the read: say so, keep serving (the page's
                # script retries on its next refresh).
                return dash.render(
                    request, "error.html", status_code=503, message=f"store unavailable: {error}"
                )

        return endpoint

    def action(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(dash: Dashboard, request: Request) -> Response:
            return await _actions.act(dash, request, name)

        return page(handle)

    routes = [
        Route("/", page(_pages.overview), name="overview"),
        Route("/jobs", page(_pages.jobs), name="jobs"),
        Route("/search", page(_pages.search), name="search"),
        Route("/jobs/{job_id}", page(_pages.job), name="job"),
        Route("/jobs/{job_id}/retry", action("retry"), methods=["POST"]),
        Route("/jobs/{job_id}/cancel", action("cancel"), methods=["POST"]),
        Route("/dead-letters", page(_pages.dead_letters), name="dead_letters"),
        Route("/dead-letters/retry", page(_bulk.retry_shown), methods=["POST"]),
        Route("/schedules", page(_pages.schedules), name="schedules"),
        # `:path`: a schedule name may contain "/" (the template leaves it unescaped).
        Route("/schedules/{name:path}/enable", action("enable"), methods=["POST"]),
        Route("/schedules/{name:path}/disable", action("disable"), methods=["POST"]),
        Route("/flow/{name:path}/pause", action("pause"), methods=["POST"]),
        Route("/flow/{name:path}/resume", action("resume"), methods=["POST"]),
        Route("/workers", page(_pages.workers), name="workers"),
        Route("/stats", page(_pages.stats), name="stats"),
        Route("/metrics", page(_pages.metrics), name="metrics"),
        Route("/login", page(_actions.login_page), methods=["GET"]),
        Route("/login", page(_actions.login), methods=["POST"]),
        Route("/logout", page(_actions.logout), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_storage:
            await dash.storage.init()
        try:
            yield
        finally:
            if manage_storage:
                await dash.storage.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        return await _pages.not_found(dash, request)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found})
    app.add_middleware(SecurityHeaders)
    return app


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every response (pure ASGI: streaming stays streaming).
    Static files may be cached for a few minutes; pages never are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name == "cache-control" and static:
                        value = "public, max-age=300"
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
