"""PrefetchBudget: how many jobs a worker holds beyond its slots, from handler durations."""

from __future__ import annotations

import pytest

from timecrisis.loops._prefetch import HORIZON, PrefetchBudget


def test_nothing_is_prefetched_before_a_handler_has_returned() -> None:
    assert PrefetchBudget(concurrency=10, ceiling=40).allowance(0.0) == 0


def test_short_handlers_get_the_whole_ceiling() -> None:
    budget = PrefetchBudget(concurrency=10, ceiling=40)
    budget.record(0.0001)
    assert budget.allowance(0.0) == 40


def test_the_allowance_is_what_the_slots_get_through_within_the_horizon() -> None:
    budget = PrefetchBudget(concurrency=10, ceiling=1000)
    budget.record(0.01)  # 10 slots x 50 ms / 10 ms
    assert budget.allowance(0.0) == int(10 * HORIZON / 0.01)


@pytest.mark.parametrize("duration", [1.0, 2.0, 60.0])
def test_long_handlers_get_no_prefetch(duration: float) -> None:
    budget = PrefetchBudget(concurrency=10, ceiling=40)
    budget.record(duration)
    assert budget.allowance(0.0) == 0


def test_a_handler_still_running_counts_as_at_least_its_age() -> None:
    budget = PrefetchBudget(concurrency=10, ceiling=40)
    budget.record(0.0001)
    assert budget.allowance(oldest_running_age=5.0) == 0


def test_the_average_follows_a_change_of_workload() -> None:
    budget = PrefetchBudget(concurrency=10, ceiling=40)
    budget.record(0.0001)
    for _ in range(50):
        budget.record(1.0)
    assert budget.allowance(0.0) == 0
    for _ in range(100):
        budget.record(0.0001)
    assert budget.allowance(0.0) == 40


def test_a_ceiling_of_zero_turns_prefetch_off() -> None:
    budget = PrefetchBudget(concurrency=10, ceiling=0)
    budget.record(0.0)
    assert budget.allowance(0.0) == 0
