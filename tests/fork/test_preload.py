"""Preloading: once a child has imported a handler's module cleanly, later children inherit it
from the fork server instead of importing it again; a module whose import starts a thread is
imported by every child."""

from __future__ import annotations

from types import ModuleType

from tests.fork import preloadable, threaded_import
from tests.fork.conftest import SchedulerFactory
from timecrisis import JobDefinition, JobStatus, JobStorage


async def _importers(
    module: ModuleType, memory: JobStorage, make_scheduler: SchedulerFactory
) -> list[tuple[int, int]]:
    """(pid that imported the handler's module, pid of the child) for three jobs in a row."""
    scheduler = make_scheduler(memory)
    scheduler.register_job(
        JobDefinition(
            type="who",
            schema=module.Nothing,
            handle=module.who_imported,
            concurrency=None,
            fork_mode=True,
        )
    )
    seen: list[tuple[int, int]] = []
    async with scheduler:
        for _ in range(3):
            job = await scheduler.wait_for_job(await scheduler.enqueue("who", {}), timeout=20)
            assert job.status == JobStatus.COMPLETED, job.fail_reason
            assert isinstance(job.result, list)
            imported_by, child = job.result
            assert isinstance(imported_by, int) and isinstance(child, int)
            seen.append((imported_by, child))
    return seen


async def test_a_cleanly_imported_module_is_preloaded_for_later_children(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    (first_importer, first_child), *later = await _importers(preloadable, memory, make_scheduler)
    assert first_importer == first_child  # the first child imported it itself
    importers = {importer for importer, _ in later}
    children = {child for _, child in later}
    assert len(importers) == 1 and not importers & children, later  # the fork server did
    assert len(children) == 2  # still a fresh process per job


async def test_a_module_whose_import_starts_a_thread_is_imported_by_every_child(
    memory: JobStorage, make_scheduler: SchedulerFactory
) -> None:
    seen = await _importers(threaded_import, memory, make_scheduler)
    assert all(importer == child for importer, child in seen), seen
    assert len({child for _, child in seen}) == 3
