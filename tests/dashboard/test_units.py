"""The dashboard's pure parts: the chart's geometry, how values read, where an action may
send the browser back to, and the options `create_app` refuses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from timecrisis.dashboard import create_app
from timecrisis.dashboard._chart import HEIGHT, MINUTE, MINUTES, PLOT_TOP, build_chart, window
from timecrisis.dashboard._format import percent, pretty_json, relative, seconds_text
from timecrisis.dashboard._security import local_path
from timecrisis.dashboard._shared import SharedRead
from timecrisis.models import JobStatus
from timecrisis.storage.base import FinishedCount
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
