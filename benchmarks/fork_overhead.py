"""Per-job cost of fork mode against in-process execution.

    python benchmarks/fork_overhead.py [--jobs 200] [--runs 3] [--concurrency 1] [--json]

One worker on the in-memory store runs `--jobs` no-op jobs per mode; a run is timed from the
enqueue of the batch to the last completion (counted by the `on_job_completed` hook, so no
polling skews it), after a warm-up job that boots the fork server. Modes:

- `in-process async` / `in-process sync`: the baseline (a `def` handler runs in a thread);
- `fork`: fork mode with the handler in an application module, here as small as one gets (a
  pydantic schema and a function): the cost of fork mode itself, plus the child importing that
  module (building one pydantic model class);
- `fork (__main__ handler)`: fork mode with the handler defined in this script, which each
  child re-creates by re-running the script as `__mp_main__` (more imports, more cost).

`overhead ms/job` is (mode time - in-process async time) / jobs, the median of `--runs` runs.
With `--concurrency 1` it is the latency each job pays; higher values show throughput.

The `child round trip` rows time one bare child, from start to collected exit status, with no
job machinery: forking the worker itself (RQ's way, which inherits the event loop, threads and
connections), multiprocessing's `spawn` (a fresh interpreter that re-imports the worker's
`__main__`), multiprocessing's `forkserver` (preloaded as generously as it allows), and
timecrisis's fork server. For reference, RQ's fork-per-job costs about 5.6 ms per job.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from timecrisis import InMemoryJobStorage, Job, JobContext, JobDefinition, JobScheduler
from timecrisis.execution.fork_server import ForkServer

Mode = tuple[str, type[BaseModel], Callable[..., Any], bool]


class Empty(BaseModel):
    pass


def noop_sync(data: Empty, ctx: JobContext) -> None:
    return None


_HANDLER_MODULE = "tc_fork_overhead_handlers"
_HANDLER_SOURCE = """
from pydantic import BaseModel


class Empty(BaseModel):
    pass


async def noop_async(data, ctx):
    return None


def noop_sync(data, ctx):
    return None


def bare_child():
    return None
"""


def _handler_module(directory: Path) -> Any:
    (directory / f"{_HANDLER_MODULE}.py").write_text(_HANDLER_SOURCE)
    sys.path.insert(0, str(directory))
    return importlib.import_module(_HANDLER_MODULE)


async def _time_batch(
    schema: type[BaseModel], handler: Callable[..., Any], *, fork: bool, jobs: int, concurrency: int
) -> float:
    done = asyncio.Event()
    completed = 0
    failures: list[str] = []

    def on_completed(job: Job) -> None:
        nonlocal completed
        completed += 1
        if completed == jobs + 1:  # + the warm-up job
            done.set()

    def on_failed(job: Job, error: BaseException) -> None:
        failures.append(f"{type(error).__name__}: {error}")
        done.set()

    scheduler = JobScheduler(
        InMemoryJobStorage(),
        max_concurrent_jobs=concurrency,
        job_processing_interval=0.05,
        on_job_completed=on_completed,
        on_job_failed=on_failed,
    )
    scheduler.register_job(
        JobDefinition(type="noop", schema=schema, handle=handler, concurrency=None, fork_mode=fork)
    )
    async with scheduler:
        await scheduler.wait_for_job(await scheduler.enqueue("noop", {}), timeout=60)
        started = time.perf_counter()
        await scheduler.enqueue_many("noop", [{}] * jobs)
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"a benchmark job failed: {failures[0]}")
    return elapsed


def _time_raw_fork(count: int) -> float:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _time_multiprocessing_child(method: str, target: Callable[[], None], count: int) -> float:
    context: Any = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["__main__", "timecrisis", _HANDLER_MODULE])
    samples = []
    for _ in range(count + 1):  # the first one also starts the server, if any
        started = time.perf_counter()
        process = context.Process(target=target)
        process.start()
        process.join()
        process.close()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples[1:])


async def _time_fork_server_child(count: int) -> float:
    server = ForkServer()
    samples = []
    try:
        for _ in range(count + 1):
            started = time.perf_counter()
            worker_end, child_end = socket.socketpair()
            child = await server.fork(child_end)
            child_end.close()
            worker_end.close()  # no start message: the child exits at once
            await child.exit_code
            samples.append(time.perf_counter() - started)
    finally:
        server.close()
    return statistics.median(samples[1:])


def _run_modes(modes: list[Mode], args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "jobs": args.jobs,
        "runs": args.runs,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "modes": {},
    }
    for name, schema, handler, fork in modes:
        times = [
            asyncio.run(
                _time_batch(
                    schema, handler, fork=fork, jobs=args.jobs, concurrency=args.concurrency
                )
            )
            for _ in range(args.runs)
        ]
        results["modes"][name] = {"seconds": statistics.median(times), "runs": times}
    baseline = results["modes"]["in-process async"]["seconds"]
    for entry in results["modes"].values():
        entry["per_job_ms"] = entry["seconds"] / args.jobs * 1000
        entry["overhead_per_job_ms"] = (entry["seconds"] - baseline) / args.jobs * 1000
    return results


def _print(results: dict[str, Any], *, as_json: bool) -> None:
    if not as_json:
        print(
            f"{results['jobs']} no-op jobs, one worker, "
            f"max_concurrent_jobs={results['concurrency']}, median of {results['runs']} runs "
            f"({results['cpus']} CPUs, Python {results['python']})"
        )
        print(f"{'mode':<26}{'total s':>10}{'ms/job':>10}{'overhead ms/job':>18}")
        for name, entry in results["modes"].items():
            print(
                f"{name:<26}{entry['seconds']:>10.3f}{entry['per_job_ms']:>10.2f}"
                f"{entry['overhead_per_job_ms']:>18.2f}"
            )
        print(f"\n{'child round trip (bare)':<36}{'ms':>10}")
        for name, ms in results["child_round_trip_ms"].items():
            print(f"{name:<36}{ms:>10.2f}")
        print()
    print(json.dumps(results, indent=None if as_json else 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()

    bare = 30
    raw_fork = _time_raw_fork(bare)  # first, while this process has no threads to inherit
    with tempfile.TemporaryDirectory() as directory:
        module = _handler_module(Path(directory))
        modes: list[Mode] = [
            ("in-process async", module.Empty, module.noop_async, False),
            ("in-process sync", module.Empty, module.noop_sync, False),
            ("fork", module.Empty, module.noop_sync, True),
            ("fork (__main__ handler)", Empty, noop_sync, True),
        ]
        results = _run_modes(modes, args)
        spawn = _time_multiprocessing_child("spawn", module.bare_child, 5)
        forkserver = _time_multiprocessing_child("forkserver", module.bare_child, bare)
        ours = asyncio.run(_time_fork_server_child(bare))
    results["child_round_trip_ms"] = {
        "os.fork of the worker (RQ's way)": raw_fork * 1000,
        "multiprocessing spawn": spawn * 1000,
        "multiprocessing forkserver": forkserver * 1000,
        "timecrisis fork server": ours * 1000,
    }
    _print(results, as_json=args.json)


if __name__ == "__main__":
    main()
