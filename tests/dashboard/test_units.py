"""The dashboard's pure parts: the chart's geometry, how values read, where an action may
send the browser back to, and the options `create_app` refuses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from timecrisis.dashboard import create_app
from timecrisis.dashboard._chart import (
    HEIGHT,
    MINUTE,
    MINUTES,
    PLOT_TOP,
    axis,
    build_chart,
    window,
)
from timecrisis.dashboard._format import (
    first_line,
    job_duration,
    percent,
    pretty_json,
    relative,
    seconds_text,
)
from timecrisis.dashboard._security import local_path
from timecrisis.dashboard._shared import SharedRead
from timecrisis.dashboard._stats import p95_bound
from timecrisis.models import Job, JobStatus, RunStatus
from timecrisis.storage.base import RUN_DURATION_BUCKETS, FinishedCount, RunStats
from timecrisis.storage.memory import InMemoryJobStorage

NOW = datetime(2025, 3, 3, 9, 41, 27, tzinfo=UTC)


def test_the_chart_ends_with_the_minute_in_progress() -> None:
    since = window(NOW)

    assert since == datetime(2025, 3, 3, 8, 42, tzinfo=UTC)
    assert since + (MINUTES - 1) * MINUTE == NOW.replace(second=0)


def test_bars_stack_failed_on_completed_and_the_peak_fills_the_plot() -> None:
    since = window(NOW)
    counts = [
        FinishedCount(since, JobStatus.COMPLETED, 6),
        FinishedCount(since, JobStatus.FAILED, 2),
        FinishedCount(since, JobStatus.CANCELED, 50),  # neither throughput nor a failure
        FinishedCount(since + 59 * MINUTE, JobStatus.COMPLETED, 4),
        FinishedCount(since - MINUTE, JobStatus.COMPLETED, 99),  # outside the window
    ]

    chart = build_chart(counts, since)

    first, last = chart.bars[0], chart.bars[-1]
    assert (chart.peak, chart.completed, chart.failed) == (8, 10, 2)
    assert first.failed_y == PLOT_TOP  # the peak reaches the top of the plot
    assert first.completed_y + first.completed_height == HEIGHT
    assert first.failed_y + first.failed_height == first.completed_y
    assert last.completed_height == pytest.approx((HEIGHT - PLOT_TOP) / 2)
    assert all(bar.completed == 0 for bar in chart.bars[1:-1])


def test_an_empty_hour_draws_no_bar() -> None:
    chart = build_chart([], window(NOW))

    assert chart.peak == 0 and len(chart.bars) == MINUTES
    assert all(bar.completed_height == bar.failed_height == 0 for bar in chart.bars)
    assert [tick.value for tick in chart.ticks] == [0, 1]  # a scale all the same


@pytest.mark.parametrize(
    ("peak", "values"),
    [
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (7, [0, 2, 4, 6, 8]),
        (8, [0, 2, 4, 6, 8]),
        (17, [0, 5, 10, 15, 20]),
        (40, [0, 10, 20, 30, 40]),
        (41, [0, 20, 40, 60]),
        (950, [0, 500, 1000]),
    ],
)
def test_the_y_axis_has_round_ticks_up_to_the_first_one_over_the_peak(
    peak: int, values: list[int]
) -> None:
    ticks = axis(peak)

    assert [tick.value for tick in ticks] == values
    assert ticks[0].y == HEIGHT and ticks[-1].y == PLOT_TOP  # from the floor to the top
    assert len(ticks) - 1 <= 4


def test_a_bar_reaches_the_tick_of_its_count() -> None:
    since = window(NOW)
    chart = build_chart(
        [FinishedCount(since, JobStatus.COMPLETED, 7), FinishedCount(since, JobStatus.FAILED, 3)],
        since,
    )  # a peak of 10: ticks 0, 5, 10

    assert [tick.value for tick in chart.ticks] == [0, 5, 10]

    assert chart.bars[0].failed_y == chart.ticks[-1].y  # the bar of 10 reaches the tick 10
    assert chart.bars[0].completed_y == pytest.approx(HEIGHT - 0.7 * (HEIGHT - PLOT_TOP))


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (0.25, "250 ms"), (12.5, "12.5 s"), (200, "3 min 20 s"), (7500, "2 h 05 min")],
)
def test_durations_read_as_people_say_them(value: float | None, text: str) -> None:
    assert seconds_text(value) == text


def test_times_read_relative_to_the_stores_clock() -> None:
    assert relative(NOW - timedelta(seconds=12), NOW) == "12 s ago"
    assert relative(NOW + timedelta(minutes=3), NOW) == "in 3 min"
    assert relative(NOW, NOW) == "just now"
    assert relative(None, NOW) == ""


def test_a_list_shows_the_first_line_of_an_error() -> None:
    assert first_line("\n  ValueError: bad\n  detail") == "ValueError: bad"
    assert first_line(None) == "" and first_line("") == ""


def test_a_jobs_duration_is_finished_minus_started() -> None:
    started = NOW - timedelta(seconds=125)
    job = Job(
        id="j",
        type="t",
        data=None,
        status=JobStatus.COMPLETED,
        priority=1,
        max_retries=0,
        attempts=1,
        backoff_strategy="exponential",
        run_at=started,
        created_at=started,
        started_at=started,
        finished_at=NOW,
    )

    assert job_duration(job) == 125
    assert job_duration(job.model_copy(update={"finished_at": None})) is None


def _completed_runs(per_bucket: dict[float, int]) -> RunStats:
    cumulative, total = [], 0
    for bound in RUN_DURATION_BUCKETS:
        total += per_bucket.get(bound, 0)
        cumulative.append(total)
    return RunStats("t", RunStatus.COMPLETED, total, 0, 0, total, 0.0, tuple(cumulative))


def test_the_p95_is_the_bucket_the_95th_run_falls_in() -> None:
    assert p95_bound([_completed_runs({0.1: 95, 10.0: 5})]) == 0.1
    assert p95_bound([_completed_runs({0.1: 94, 10.0: 6})]) == 10.0
    assert p95_bound([_completed_runs({0.1: 50}), _completed_runs({1.0: 50})]) == 1.0
    assert p95_bound([]) is None


def test_values_keep_their_markup_for_the_template_to_escape() -> None:
    assert pretty_json({"b": "<i>", "a": 1}) == '{\n  "a": 1,\n  "b": "<i>"\n}'
    assert percent(40.0) == "40%" and percent(12.5) == "12.5%"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/queue/jobs?status=failed", "/queue/jobs?status=failed"),
        ("//evil.example/queue/", "/queue/"),
        ("https://evil.example/queue/", "/queue/"),
        ("/other/app", "/queue/"),
        ("/queue/\\evil", "/queue/"),
        ("/queue/\r\nSet-Cookie: x", "/queue/"),
        (None, "/queue/"),
    ],
)
def test_an_action_only_sends_the_browser_back_inside_the_dashboard(
    target: str | None, expected: str
) -> None:
    assert local_path(target, "/queue", "/queue/") == expected


def test_create_app_refuses_options_that_cannot_work() -> None:
    storage = InMemoryJobStorage()
    with pytest.raises(ValueError, match="token"):
        create_app(storage, actions_enabled=True, token="")
    with pytest.raises(ValueError, match="refresh_seconds"):
        create_app(storage, refresh_seconds=0)
    with pytest.raises(ValueError, match="page_size"):
        create_app(storage, page_size=0)


async def test_concurrent_viewers_share_one_read_and_reuse_it_while_fresh() -> None:
    calls = 0
    release = asyncio.Event()

    async def read() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    shared = SharedRead(read, max_age=3600)
    viewers = [asyncio.ensure_future(shared.get()) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()

    assert await asyncio.gather(*viewers) == [1] * 5
    assert await shared.get() == 1 and calls == 1
    assert await SharedRead(read, max_age=0).get() == 2  # stale at once: read again
