"""Fork mode end to end: the child runs the handler with a working context and reports back."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fork import handlers
from tests.fork.conftest import SchedulerFactory
from timecrisis import JobDefinition, JobStatus, JobStorage, RunStatus


@pytest.mark.parametrize("handler", [handlers.report_sync, handlers.report_async])
async def test_a_handler_runs_in_a_child_whose_context_crosses_the_boundary(
    store: JobStorage,
    make_scheduler: SchedulerFactory,
    handler: handlers.Handler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = make_scheduler(store)
    scheduler.register_job(
        JobDefinition(
            type="report", schema=handlers.Work, handle=handler, concurrency=2, fork_mode=True
        )
    )
    caplog.set_level(logging.INFO, logger="timecrisis")
    async with scheduler:
        job_id = await scheduler.enqueue("report", {"n": 7}, entity_id="customer-1")
        job = await scheduler.wait_for_job(job_id, timeout=20)

    assert job.status == JobStatus.COMPLETED, job.fail_reason
    assert job.result is not None and isinstance(job.result, dict)
    seen = handlers.Seen.model_validate(job.result)
    assert seen.pid != os.getpid()
    assert seen.model_dump(exclude={"pid"}) == {
        "job_id": job_id,
        "job_type": "report",
        "attempt": 1,
        "entity_id": "customer-1",
        "payload": {"kind": "ok", "n": 7},
        "shutting_down": False,
        "cancelled": False,
    }
    assert job.progress == 100
    logs = await scheduler.get_job_logs(job_id)
    runs = await scheduler.get_job_runs(job_id)
    assert [(log.level, log.message, log.metadata) for log in logs] == [
        ("info", "starting", {"n": 7}),
        ("warn", "done", None),
    ]
    assert {log.run_id for log in logs} == {runs[0].id}
    assert [(run.status, run.progress) for run in runs] == [(RunStatus.COMPLETED, 100)]
    # ctx.logger records made in the child come out of the worker's job logger.
    assert ("timecrisis.job.report", logging.WARNING, "a record from the child's ctx.logger") in (
        caplog.record_tuples
    )


async def test_fork_helper_path_runs_the_files_handle_with_the_validated_payload(
    memory: JobStorage, make_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    helper = tmp_path / "helper.py"
    helper.write_text(
        textwrap.dedent(
            """
            import os

            def handle(data, ctx):
                ctx.log_sync("info", f"helper got {type(data).__name__}")
                return {"n": data.n * 2, "module": __name__, "pid": os.getpid()}
            """
        )
    )
    scheduler = make_scheduler(memory)
    scheduler.register_job(
        JobDefinition(
            type="helped",
            schema=handlers.Work,
            handle=handlers.crash,  # not run in fork mode: the helper's `handle` is
            concurrency=None,
            fork_mode=True,
            fork_helper_path=str(helper),
        )
    )
    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("helped", {"n": 21}), timeout=20)

    assert job.status == JobStatus.COMPLETED, job.fail_reason
    assert isinstance(job.result, dict)
    assert (job.result["n"], job.result["module"]) == (42, "timecrisis_fork_helper")
    assert job.result["pid"] != os.getpid()
    assert [log.message for log in await scheduler.get_job_logs(job.id)] == ["helper got Work"]


async def test_a_payload_the_childs_schema_rejects_fails_at_once_without_retry(
    memory: JobStorage,
    make_scheduler: SchedulerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rolling deploy: the module on disk changed after the worker imported it. The child
    imports the new code (with the worker's sys.path, which gained tmp_path after the fork
    server started) and refuses the stored payload, as an in-process worker would."""
    module = tmp_path / "deployed_orders.py"
    module.write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel

            class Order(BaseModel):
                qty: int

            def handle(data, ctx):
                return data.qty
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import deployed_orders  # type: ignore[import-not-found]

    scheduler = make_scheduler(memory)
    scheduler.register_job(
        JobDefinition(
            type="order",
            schema=deployed_orders.Order,
            handle=deployed_orders.handle,
            concurrency=None,
            max_retries=3,
            fork_mode=True,
        )
    )
    job_id = await scheduler.enqueue("order", {"qty": 2})
    module.write_text(module.read_text().replace("qty: int", "qty: int\n    sku: str"))
    async with scheduler:
        job = await scheduler.wait_for_job(job_id, timeout=20)

    assert job.status == JobStatus.FAILED
    assert job.attempts == 1  # not retried
    assert job.fail_reason is not None
    assert job.fail_reason.startswith(
        "NonRetryableError: the stored payload no longer matches the schema of 'order' in the "
        "child process"
    )
    assert "sku" in job.fail_reason
    monkeypatch.delitem(sys.modules, "deployed_orders")


def test_a_handler_defined_in_main_runs_in_a_child_that_recreates_main(tmp_path: Path) -> None:
    """`python script.py`: the child re-runs the script as `__mp_main__` (its main block does
    not run again) to find the handler and schema."""
    script = tmp_path / "worker_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, json, os
            from pydantic import BaseModel
            from timecrisis import InMemoryJobStorage, JobContext, JobScheduler

            scheduler = JobScheduler(InMemoryJobStorage(), job_processing_interval=0.05)

            class Greeting(BaseModel):
                name: str

            @scheduler.job("greet", concurrency=None, fork_mode=True)
            def greet(data: Greeting, ctx: JobContext) -> dict:
                return {"hello": data.name, "module": __name__, "pid": os.getpid()}

            async def main() -> None:
                async with scheduler:
                    job_id = await scheduler.enqueue("greet", {"name": "world"})
                    job = await scheduler.wait_for_job(job_id, timeout=30)
                print(json.dumps({"status": job.status, "result": job.result,
                                  "reason": job.fail_reason, "pid": os.getpid()}))

            if __name__ == "__main__":
                asyncio.run(main())
            """
        )
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "completed", outcome["reason"]
    assert outcome["result"]["hello"] == "world"
    assert outcome["result"]["module"] == "__mp_main__"
    assert outcome["result"]["pid"] != outcome["pid"]
