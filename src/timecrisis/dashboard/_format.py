"""Jinja filters: how times, durations and JSON values read on the dashboard's pages.

Times are shown in UTC (the store's zone), with their distance from the store's clock, so a
page reads the same whichever host's browser looks at it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from timecrisis.models import Job, JsonValue


def utc_text(value: datetime | None) -> str:
    """`2025-01-01 12:00:05` (UTC) for an aware datetime, `—` for None."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def utc_short(value: datetime | None) -> str:
    """`03-01 12:00:05` (UTC): a list's column, the year and zone in its tooltip."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def iso(value: datetime | None) -> str:
    """The machine-readable form for `<time datetime=...>`."""
    return "" if value is None else value.astimezone(UTC).isoformat()


def seconds_text(value: float | None) -> str:
    """A duration as people read it: `850 ms`, `12.5 s`, `3 min 20 s`, `2 h 05 min`."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        minutes, secs = divmod(round(value), 60)
        return f"{minutes} min {secs:02d} s"
    hours, rest = divmod(round(value), 3600)
    return f"{hours} h {rest // 60:02d} min"


def relative(value: datetime | None, now: datetime) -> str:
    """`12 s ago`, `in 3 min`, `just now`, relative to `now` (the store's clock)."""
    if value is None:
        return ""
    delta = (value - now).total_seconds()
    if abs(delta) < 1:
        return "just now"
    text = _coarse(abs(delta))
    return f"in {text}" if delta > 0 else f"{text} ago"


def _coarse(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def pretty_json(value: JsonValue) -> str:
    """Indented JSON for a payload or a result. Not escaped here: Jinja's autoescape does it,
    so a payload holding `<script>` shows as text."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def percent(value: float) -> str:
    return f"{value:.0f}%" if value == int(value) else f"{value:.1f}%"


def first_line(value: str | None) -> str:
    """The first non-blank line of an error: what a list has room for (the job's page shows
    the whole text and the traceback)."""
    for line in (value or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def job_duration(job: Job) -> float | None:
    """How long the job's last attempt took (finished - started), None until it finishes."""
    if job.started_at is None or job.finished_at is None:
        return None
    return max(0.0, (job.finished_at - job.started_at).total_seconds())


def cancel_requested(job: Job) -> bool:
    """Whether `cancel_job` asked this running job to stop (it still runs until its handler
    returns): the record's `cancel_requested`, which stores set only while the job runs."""
    return job.cancel_requested


FILTERS = {
    "utc": utc_text,
    "utc_short": utc_short,
    "iso": iso,
    "seconds": seconds_text,
    "pretty_json": pretty_json,
    "percent": percent,
    "first_line": first_line,
    "job_duration": job_duration,
    "cancel_requested": cancel_requested,
}
