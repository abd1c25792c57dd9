"""The overview's chart: jobs completed and failed per minute over the last hour, as SVG
geometry computed here and drawn by the template (no JavaScript, no chart library).

The y-axis has round ticks (a step of 1, 2 or 5 times a power of ten, at most `MAX_TICKS`
intervals): the plot's top is the first tick at or above the peak, so the tallest bar is read
against a labelled line, not against "peak N/min" somewhere else on the page."""

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
PLOT_TOP = 8  # room for the top tick's label
MAX_TICKS = 4  # intervals between the y-axis ticks, at most


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
class Tick:
    value: int  # jobs per minute
    y: float  # where its grid line is drawn, in SVG units from the top


@dataclass(frozen=True, slots=True)
class Chart:
    since: datetime
    bars: list[Bar]
    peak: int  # the most jobs finished in one minute
    completed: int
    failed: int
    ticks: list[Tick]  # the y-axis, bottom (0) first; the last one is the top of the scale
    width: int = WIDTH
    height: int = HEIGHT


def window(now: datetime) -> datetime:
    """Where the chart starts: 59 whole minutes before the current minute, so the last bar is
    the minute in progress."""
    minute = now.replace(second=0, microsecond=0)
    return minute - (MINUTES - 1) * MINUTE


def tick_step(peak: int) -> int:
    """The smallest round step (1, 2, 5, 10, 20, 50...) that covers `peak` in `MAX_TICKS`
    intervals or fewer."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if step * MAX_TICKS >= peak:
                return step
        magnitude *= 10


def axis(peak: int) -> list[Tick]:
    """Ticks from 0 to the first multiple of the step at or above `peak` (at least 1, so an
    empty hour still has a scale)."""
    step = tick_step(max(peak, 1))
    top = -(-max(peak, 1) // step) * step
    plot = HEIGHT - PLOT_TOP
    return [Tick(v, round(HEIGHT - v * plot / top, 2)) for v in range(0, top + 1, step)]


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
    ticks = axis(peak)
    scale = (HEIGHT - PLOT_TOP) / ticks[-1].value
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
    return Chart(
        since=since,
        bars=bars,
        peak=peak,
        completed=sum(completed),
        failed=sum(failed),
        ticks=ticks,
    )
