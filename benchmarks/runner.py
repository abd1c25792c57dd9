"""`python -m benchmarks [--quick]`: every workload on every system, medians of 3 runs.

Each (workload, system, run) is one `benchmarks.case` process with a time limit; systems are
interleaved (run 1 of every system, then run 2 of every system, each round in a rotated order),
so a slow minute on this shared machine spreads over all of them instead of sinking one. The
W5 history is prepared once, before the first W5 case, and cached between invocations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import report, worker_rss
from benchmarks.case import OURS, PEERS, WORKLOADS
from benchmarks.config import (
    POSTGRES_URL,
    REDIS_URL,
    RESULTS,
    ROOT,
    Counts,
    counts,
    quick_from_env,
)
from benchmarks.peers import available
from benchmarks.pg import commit_latency_ms, ensure_database
from benchmarks.systems import python_env

SYSTEMS: dict[str, tuple[str, ...]] = {
    "w1": (*OURS, *PEERS),
    "w2": (*OURS, *PEERS),
    "w3": (*OURS, *PEERS),
    "w4": ("sqlite", "postgres", *PEERS),
    "w5": ("sqlite", "postgres"),
    "fork": OURS,
    "w6": OURS,
}
_PEER_MODULES = {
    "procrastinate": ("procrastinate",),
    "pgqueuer": ("pgqueuer", "asyncpg"),
    "saq": ("saq",),
    "bullmq": ("redis",),  # its Python side asks Redis directly; Node and npm are checked below
}
_REDIS_PEERS = ("saq", "bullmq")

console = Console(stderr=True)


def _run_case(
    workload: str, system: str, quick: bool, workdir: Path, timeout: float
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.case", workload, system, "--workdir", str(workdir)]
    if quick:
        argv.append("--quick")
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # killed as a group, workers included, on timeout
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"ok": False, "error": f"timed out after {timeout:.0f}s"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        outcome: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        outcome = {"ok": False, "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    outcome["wall_s"] = time.monotonic() - started
    return outcome


def _redis_up() -> bool:
    import redis  # only when a Redis peer is wanted, and then the bench extra brought it

    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _median(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = {k for run in runs for k, v in run.items() if isinstance(v, int | float)}
    return {
        k: statistics.median(v for run in runs if isinstance(v := run.get(k), int | float))
        for k in sorted(keys)
    }


def _plan(args: argparse.Namespace) -> list[tuple[str, tuple[str, ...]]]:
    workloads = args.only.split(",") if args.only else list(WORKLOADS)
    wanted = set(args.systems.split(",")) if args.systems else set(OURS) | set(PEERS)
    if args.no_peers:
        wanted -= set(PEERS)
    for peer, modules in _PEER_MODULES.items():
        if peer in wanted and not all(available(m) for m in modules):
            console.print(f"[yellow]{peer} is not installed (the `bench` extra): skipped[/]")
            wanted.discard(peer)
    redis_peers = [p for p in _REDIS_PEERS if p in wanted]
    if redis_peers and not _redis_up():
        console.print(f"[yellow]no Redis at {REDIS_URL}: {', '.join(redis_peers)} skipped[/]")
        wanted -= set(redis_peers)
    if "bullmq" in wanted:  # last: this may run `npm ci`, worth it only if BullMQ can run
        from benchmarks.peers.bullmq_peer import unavailable  # imports redis: checked above

        if why := unavailable():
            console.print(f"[yellow]BullMQ skipped: {why}[/]")
            wanted.discard("bullmq")
    return [(w, tuple(s for s in SYSTEMS[w] if s in wanted)) for w in workloads]


def _commit_ms() -> float | None:
    try:
        asyncio.run(ensure_database(POSTGRES_URL))
        return round(commit_latency_ms(POSTGRES_URL), 3)
    except Exception as exc:
        console.print(f"[yellow]PostgreSQL commit probe failed: {exc}[/]")
        return None


def _meta(c: Counts, quick: bool) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "counts": {k: getattr(c, k) for k in c.__slots__},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "pg_commit_ms_at_start": _commit_ms(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, one run (smoke)")
    parser.add_argument("--runs", type=int, help="runs per case (default 3; 1 with --quick)")
    parser.add_argument("--only", help=f"comma-separated workloads of {','.join(WORKLOADS)}")
    parser.add_argument("--systems", help="comma-separated systems (default: all)")
    parser.add_argument("--no-peers", action="store_true", help="timecrisis only")
    parser.add_argument("--output", type=Path, help="JSON path (default results/latest.json)")
    args = parser.parse_args()
    quick = args.quick or quick_from_env()
    c = counts(quick)
    runs = args.runs or c.runs
    plan = _plan(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = args.output or RESULTS / ("quick.json" if quick else "latest.json")
    results: dict[str, Any] = {"meta": _meta(c, quick), "cases": {}, "prepare": {}}
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {w: {s: [] for s in ss} for w, ss in plan}
    errors: dict[str, dict[str, list[str]]] = {w: {s: [] for s in ss} for w, ss in plan}

    with tempfile.TemporaryDirectory(prefix="tcbench-") as tmp:
        workdir = Path(tmp)
        for workload, systems in plan:
            if workload != "w5":
                continue
            for system in systems:
                console.print(f"preparing the W5 history on {system} ...")
                outcome = _run_case("w5-prepare", system, quick, workdir, c.prefill_timeout)
                results["prepare"][system] = outcome
                if not outcome.get("ok"):
                    console.print(f"[red]  failed: {outcome.get('error')}[/]")
        for run in range(runs):
            for workload, systems in plan:
                order = systems[run % len(systems) :] + systems[: run % len(systems)]
                for system in order:
                    prepared = results["prepare"].get(system, {"ok": True})
                    if workload == "w5" and not prepared.get("ok"):
                        continue
                    outcome = _run_case(workload, system, quick, workdir, c.case_timeout)
                    label = f"run {run + 1}/{runs} {workload:<4} {system:<13}"
                    if outcome.get("ok"):
                        raw[workload][system].append(outcome["result"])
                        console.print(f"{label} {report.brief(workload, outcome['result'])}")
                    else:
                        errors[workload][system].append(str(outcome.get("error")))
                        console.print(f"[red]{label} FAILED: {outcome.get('error')}[/]")
                        if "trace" in outcome:
                            console.print(outcome["trace"], markup=False, highlight=False)

    for workload, systems in plan:
        results["cases"][workload] = {
            s: {
                "runs": raw[workload][s],
                "median": _median(raw[workload][s]),
                "errors": errors[workload][s],
            }
            for s in systems
        }
    if not args.only:  # the idle and drained memory of a CLI worker (benchmarks/worker_rss.py)
        results["worker_rss"] = worker_rss.measure(1_000 if quick else 10_000, runs)
    results["meta"]["loadavg_at_end"] = os.getloadavg()
    results["meta"]["pg_commit_ms_at_end"] = _commit_ms()
    results["targets"] = report.targets(results["cases"])
    output.write_text(json.dumps(results, indent=2) + "\n")
    (output.with_suffix(".md")).write_text(report.markdown(results) + "\n")
    report.show(results, Console(width=max(Console().width, 150)))
    if "worker_rss" in results:
        console.print(worker_rss.describe(results["worker_rss"]))
    console.print(f"JSON: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
