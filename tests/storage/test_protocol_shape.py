"""The shape of the contract: `JobStorage` is exactly `WorkerStore` + `StoreInspector`, and a
plain class with every method (no base class, no `capabilities`) is a store that declares no
optional feature. Runs once: it inspects classes, not a backend."""

from __future__ import annotations

import typing
from typing import Any

from timecrisis.storage.base import (
    NO_CAPABILITIES,
    JobStorage,
    StoreInspector,
    WorkerStore,
    capabilities_of,
    combined_claim,
)


def _members(protocol: type) -> set[str]:
    members: set[str] = typing._get_protocol_attrs(protocol)  # type: ignore[attr-defined]
    return members


def test_the_two_parts_split_the_contract_without_overlap() -> None:
    worker, inspector = _members(WorkerStore), _members(StoreInspector)
    assert worker.isdisjoint(inspector)
    assert worker | inspector == _members(JobStorage)
    assert {"claim_jobs", "advance_schedule", "insert_jobs"} <= worker
    assert {"get_metrics", "get_run_stats", "list_jobs"} <= inspector


def test_a_plain_class_with_every_method_is_a_store_that_declares_nothing() -> None:
    async def stub(self: object, *args: Any, **kwargs: Any) -> None:
        del self, args, kwargs

    plain = type("Plain", (), dict.fromkeys(_members(JobStorage), stub))()

    assert isinstance(plain, JobStorage)
    assert capabilities_of(plain) is NO_CAPABILITIES
    assert combined_claim(plain) is None  # the worker makes two calls
