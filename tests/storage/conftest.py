"""Fixtures of the storage conformance suite: every test runs once per selected backend.

`TIMECRISIS_TEST_BACKENDS` (comma-separated, default: all) picks the backends, e.g.
`TIMECRISIS_TEST_BACKENDS=memory,sqlite pytest tests/storage`.
"""

from __future__ import annotations

import importlib
import os
import pathlib
from collections.abc import AsyncIterator

import pytest

from tests.storage.factories import START
from tests.storage.harness import StoreHarness
from timecrisis.clock import ManualClock
from timecrisis.storage.base import JobStorage

ALL_BACKENDS = ("memory", "sqlite", "postgres", "reference")


def selected_backends() -> list[str]:
    raw = os.environ.get("TIMECRISIS_TEST_BACKENDS", "")
    names = [name.strip() for name in raw.split(",") if name.strip()] or list(ALL_BACKENDS)
    unknown = sorted(set(names) - set(ALL_BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"TIMECRISIS_TEST_BACKENDS names unknown backends {unknown}; "
            f"choose among {list(ALL_BACKENDS)}"
        )
    return names


def _backend_param(name: str) -> object:
    marks = [pytest.mark.postgres] if name == "postgres" else []
    return pytest.param(name, marks=marks, id=name)


@pytest.fixture
def clock() -> ManualClock:
    # A fixed, whole-second instant: stored times compare exactly on every backend.
    return ManualClock(START)


@pytest.fixture(params=[_backend_param(name) for name in selected_backends()])
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def harness(
    backend_name: str, tmp_path: pathlib.Path, clock: ManualClock
) -> AsyncIterator[StoreHarness]:
    module = importlib.import_module(f"tests.storage.backend_{backend_name}")
    store_harness: StoreHarness = module.make_harness(tmp_path, clock)
    try:
        yield store_harness
    finally:
        await store_harness.aclose()


@pytest.fixture
async def storage(harness: StoreHarness) -> JobStorage:
    return await harness.open()


@pytest.fixture
async def harness_handles(harness: StoreHarness) -> tuple[JobStorage, JobStorage]:
    """Two handles on one store, as two processes would hold."""
    return await harness.open(), await harness.open()
