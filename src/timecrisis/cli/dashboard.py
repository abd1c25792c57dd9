"""`timecrisis dashboard`: serve the web dashboard and `/metrics` with uvicorn."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import click

from timecrisis.cli._params import DURATION
from timecrisis.cli._store import open_storage, redact, storage_option, with_scheduler
from timecrisis.scheduler import JobScheduler

TOKEN_ENV = "TIMECRISIS_DASHBOARD_TOKEN"


@click.command(short_help="Serve the web dashboard and Prometheus /metrics.")
@storage_option()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The pages need no login: bind elsewhere only behind your own "
    "access control.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port."
)
@click.option(
    "--enable-actions",
    is_flag=True,
    help="Allow retrying and canceling jobs and toggling schedules (needs --token).",
)
@click.option(
    "--token",
    metavar="TOKEN",
    envvar=TOKEN_ENV,
    show_envvar=False,
    help=f"The token actions need. Default: ${TOKEN_ENV} (prefer it: an argument shows in ps).",
)
@click.option(
    "--refresh",
    type=DURATION,
    default="2s",
    show_default=True,
    help="How often the live parts of a page refresh.",
)
@click.option(
    "--root-path",
    default="",
    metavar="PATH",
    help="The path prefix a reverse proxy serves the dashboard under, e.g. /queue.",
)
def dashboard(
    storage_url: str,
    host: str,
    port: int,
    enable_actions: bool,
    token: str | None,
    refresh: timedelta,
    root_path: str,
) -> None:
    """Serve the dashboard: the queue at a glance, jobs with their runs and logs, dead letters,
    schedules with their next fire times, workers, and /metrics for Prometheus.

    Read-only unless --enable-actions is given, and then every action needs the token: log in
    on the page, or send `Authorization: Bearer TOKEN` from a script.

    \b
    Examples:
      timecrisis dashboard --storage sqlite:///app.db
      TIMECRISIS_DASHBOARD_TOKEN=$(openssl rand -hex 16) \\
        timecrisis dashboard --storage postgresql://app@db/app --enable-actions
    """
    import uvicorn

    from timecrisis.dashboard import create_app

    if enable_actions and not token:
        raise click.UsageError(f"--enable-actions needs a token: --token or ${TOKEN_ENV}")
    if refresh <= timedelta(0):
        raise click.BadParameter("must be positive", param_hint="'--refresh'")

    async def reachable(scheduler: JobScheduler) -> None:
        await scheduler.storage.now()

    # Fail fast, with the CLI's one-line errors, on a bad URL or an unreachable store; the
    # server's own store is built anew for its event loop (a PostgreSQL pool binds to one).
    with_scheduler(storage_url, reachable)
    app = create_app(
        open_storage(storage_url),
        actions_enabled=enable_actions,
        token=token if enable_actions else None,
        refresh_seconds=refresh.total_seconds(),
        manage_storage=True,
    )
    mode = "actions enabled" if enable_actions else "read-only"
    click.echo(f"timecrisis dashboard on {redact(storage_url)} ({mode})", err=True)
    if not _is_loopback(host):
        click.echo(
            f"warning: listening on {host}: anyone who can reach it reads every job's payload",
            err=True,
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        root_path=root_path,
        ws="none",  # no websocket route: don't import a websocket library
        log_level="info",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
