"""One measurement, in a process of its own: `python -m benchmarks.case WORKLOAD SYSTEM`.

Prints one JSON line on stdout: `{"ok": true, "result": {...}}` or `{"ok": false, "error": ...}`.
The runner starts one such process per (workload, system, run), with a time limit, so a run
never sees another's connections, threads, caches or leftover garbage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from benchmarks import w1_enqueue, w3_latency, w5_history, w6_sync
from benchmarks.config import Counts, counts
from benchmarks.systems import Memory, Postgres, SQLite, System
from benchmarks.w2_drain import drain, fork_drain

WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "fork", "w6")
OURS = ("memory", "sqlite", "postgres")
PEERS = ("procrastinate", "pgqueuer", "saq", "bullmq")


def make_system(name: str, workdir: Path) -> System:
    if name == "memory":
        return Memory()
    if name == "sqlite":
        return SQLite(workdir / "bench.db")
    if name == "postgres":
        return Postgres()
    if name == "procrastinate":
        from benchmarks.peers.procrastinate_peer import Procrastinate

        return Procrastinate()
    if name == "pgqueuer":
        from benchmarks.peers.pgqueuer_peer import Pgqueuer

        return Pgqueuer()
    if name == "saq":
        from benchmarks.peers.saq_peer import Saq

        return Saq()
    if name == "bullmq":
        from benchmarks.peers.bullmq_peer import BullMQ

        return BullMQ()
    raise ValueError(f"unknown system {name!r}")


async def measure(workload: str, name: str, c: Counts, workdir: Path) -> dict[str, Any]:
    if workload == "w5-prepare":
        return await w5_history.prepare(name, c)
    if workload == "w5":
        system = w5_history.history_system(name, c.w5_history)
    else:
        system = make_system(name, workdir)
    # What the drain may take: the whole case's budget less a margin for setup and prefill.
    budget = c.case_timeout * 0.8
    try:
        if workload == "w1":
            return await w1_enqueue.run(system, c, workdir)
        if workload == "w2":
            return await drain(
                system, jobs=c.w2_jobs, workers=1, fork=False, timeout=budget, workdir=workdir
            )
        if workload == "w3":
            return await w3_latency.run(system, c, workdir)
        if workload == "w4":
            return await drain(
                system, jobs=c.w4_jobs, workers=2, fork=False, timeout=budget, workdir=workdir
            )
        if workload == "w5":
            return await w5_history.run(system, c, workdir, budget)
        if workload == "w6":
            return await w6_sync.run(system, c, workdir)
        if workload == "fork":
            return await fork_drain(system, jobs=c.fork_jobs, timeout=budget, workdir=workdir)
        raise ValueError(f"unknown workload {workload!r}")
    finally:
        await system.close()
        await system.discard()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=[*WORKLOADS, "w5-prepare"])
    parser.add_argument("system", choices=[*OURS, *PEERS])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    try:
        result = asyncio.run(measure(args.workload, args.system, counts(args.quick), args.workdir))
    except Exception as exc:
        print(
            json.dumps(
                {
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc(),
                }
            )
        )
        sys.exit(1)
    print(json.dumps({"ok": True, "result": result}))


if __name__ == "__main__":
    main()
