"""The overview's chart: jobs completed and failed per minute over the last hour, as SVG
geometry computed here and drawn by the template (no JavaScript, no chart library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from timecrisis.models import JobStatus
from timecrisis.storage.base import FinishedCount

MINUTE = timedelta(minutes=1)
MINUTES = 60
WIDTH = 720  # SVG user units: 12 per minute
HEIGHT = 160
PLOT_TOP = 12  # room for the peak label


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float
    start: datetime
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class Chart:
    since: datetime
    bars: list[Bar]
    peak: int  # the most jobs finished in one minute: the top of the scale
    completed: int
    failed: int
    width: int = WIDTH
    height: int = HEIGHT


def window(now: datetime) -> datetime:
    """Where the chart starts: 59 whole minutes before the current minute, so the last bar is
    the minute in progress."""
    minute = now.replace(second=0, microsecond=0)
    return minute - (MINUTES - 1) * MINUTE


def build_chart(counts: Sequence[FinishedCount], since: datetime) -> Chart:
    """Bars for each minute from `since`: completed stacked under failed (canceled jobs are not
    throughput, nor failures, and are left out)."""
    completed = [0] * MINUTES
    failed = [0] * MINUTES
    for count in counts:
        index = int((count.start - since) / MINUTE)
        if not 0 <= index < MINUTES:
            continue
        if count.status is JobStatus.COMPLETED:
            completed[index] += count.count
        elif count.status is JobStatus.FAILED:
            failed[index] += count.count
    peak = max((c + f for c, f in zip(completed, failed, strict=True)), default=0)
    scale = (HEIGHT - PLOT_TOP) / peak if peak else 0.0
    slot = WIDTH / MINUTES
    bars: list[Bar] = []
    for i in range(MINUTES):
        completed_height = completed[i] * scale
        failed_height = failed[i] * scale
        bars.append(
            Bar(
                x=round(i * slot + 1, 2),
                width=round(slot - 2, 2),
                completed_y=round(HEIGHT - completed_height, 2),
                completed_height=round(completed_height, 2),
                failed_y=round(HEIGHT - completed_height - failed_height, 2),
                failed_height=round(failed_height, 2),
                start=since + i * MINUTE,
                completed=completed[i],
                failed=failed[i],
            )
        )
    return Chart(since=since, bars=bars, peak=peak, completed=sum(completed), failed=sum(failed))
