"""A plain install has no OpenTelemetry (it is the `timecrisis[otel]` extra) and must not need
it: with `opentelemetry` unimportable, timecrisis imports, enqueues and runs jobs, and stores no
headers. With it installed, `import timecrisis` still does not import it (the first enqueue or
attempt does). Each check runs in a fresh interpreter, where the import can be blocked."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]

BLOCKED = """
import sys
sys.modules["opentelemetry"] = None  # `import opentelemetry...` now raises ImportError
"""

RUN_A_JOB = """
import asyncio
from pydantic import BaseModel
from timecrisis import JobContext, JobScheduler, JobStatus, storage_from_url, _tracing

class Payload(BaseModel):
    n: int

async def main(url: str) -> None:
    scheduler = JobScheduler(storage_from_url(url), job_processing_interval=0.1)

    @scheduler.job("double", concurrency=None)
    async def double(data: Payload, ctx: JobContext) -> int:
        return data.n * 2

    async with scheduler:
        [job_id] = await scheduler.enqueue_many("double", [{"n": 21}])
        job = await scheduler.wait_for_job(job_id, timeout=20)
    await scheduler.close()
    assert (job.status, job.result, job.headers) == (JobStatus.COMPLETED, 42, None), job
    print(url.split(":")[0], "ok", _tracing._instrumentation())

asyncio.run(main("memory://"))
asyncio.run(main(sys.argv[1]))
"""


def _python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_jobs_run_without_opentelemetry(tmp_path: pathlib.Path) -> None:
    out = _python(BLOCKED + RUN_A_JOB, f"sqlite:///{tmp_path / 'jobs.db'}")
    assert out.splitlines() == ["memory ok None", "sqlite ok None"]


def test_the_blocked_import_is_really_blocked() -> None:
    """The premise of the test above: the block makes the import fail as a missing package
    does (ImportError), in the interpreter the tests use, which has opentelemetry installed."""
    out = _python(
        BLOCKED
        + """
try:
    import opentelemetry.trace
except ImportError:
    print("blocked")
import importlib.util
sys.modules.pop("opentelemetry")
print(importlib.util.find_spec("opentelemetry") is not None)
"""
    )
    assert out.splitlines() == ["blocked", "True"]


def test_importing_timecrisis_does_not_import_opentelemetry() -> None:
    out = _python(
        """
import sys
import timecrisis
import timecrisis.cli
print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
"""
    )
    assert out.strip() == "[]"
