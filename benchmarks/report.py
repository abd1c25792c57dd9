"""The table (rich, and Markdown for the docs) and the issue's targets, met or missed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

SYSTEM_ORDER = ("memory", "sqlite", "postgres", "procrastinate", "pgqueuer", "saq", "bullmq")
STORES = {
    "memory": "timecrisis memory",
    "sqlite": "timecrisis SQLite",
    "postgres": "timecrisis PostgreSQL",
    "procrastinate": "Procrastinate (PG)",
    "pgqueuer": "pgqueuer (PG)",
    "saq": "SAQ (Redis)",
    "bullmq": "BullMQ (Node, Redis)",
}
Cases = dict[str, dict[str, Any]]


def brief(workload: str, result: dict[str, Any]) -> str:
    if workload == "w1":
        return f"{result['one_per_s']:,.0f}/s one by one, {result['many_per_s']:,.0f}/s batched"
    if workload == "w6":
        return (
            f"{result['sync_per_s']:,.0f}/s enqueue_sync from 8 threads, "
            f"{result['async_per_s']:,.0f}/s enqueue from 8 tasks"
        )
    if workload == "w3":
        return (
            f"p50 {result['p50_ms']:.1f} p95 {result['p95_ms']:.1f} "
            f"p99 {result['p99_ms']:.1f} max {result['max_ms']:.1f} ms"
        )
    rss = result.get("rss_mb")
    return f"{result['jobs_per_s']:,.0f} jobs/s in {result['seconds']:.2f}s" + (
        f", RSS {rss:.0f} MiB" if rss else ""
    )


def _m(cases: Cases, workload: str, system: str, key: str) -> float | None:
    value = cases.get(workload, {}).get(system, {}).get("median", {}).get(key)
    return float(value) if isinstance(value, int | float) else None


def _rate(v: float | None) -> str:
    return "" if v is None else f"{v:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{a / b:.2f}×"


Row = tuple[str, Callable[[Cases, str], str]]


def _latency(cases: Cases, s: str) -> str:
    values = [_m(cases, "w3", s, k) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
    if any(v is None for v in values):
        return ""
    return " / ".join(f"{v:.1f}" for v in values if v is not None)


def _fork_overhead(cases: Cases, s: str) -> str:
    overhead = _m(cases, "fork", s, "overhead_ms")  # against a drain of as many jobs
    return "" if overhead is None else f"{overhead:.2f}"


PEERS = ("procrastinate", "pgqueuer", "saq", "bullmq")
PYTHON_PEERS = ("procrastinate", "pgqueuer", "saq")


def _pg_over(workload: str, key: str) -> Callable[[Cases, str], str]:
    """A row's cell: timecrisis PostgreSQL's median divided by this peer's (same run)."""

    def cell(cases: Cases, s: str) -> str:
        if s not in PEERS:
            return ""
        return _ratio(_m(cases, workload, "postgres", key), _m(cases, workload, s, key))

    return cell


ROWS: list[Row] = [
    ("W1 enqueue one at a time (jobs/s)", lambda c, s: _rate(_m(c, "w1", s, "one_per_s"))),
    ("W1 enqueue_many (jobs/s)", lambda c, s: _rate(_m(c, "w1", s, "many_per_s"))),
    ("W2 drain, 1 process (jobs/s)", lambda c, s: _rate(_m(c, "w2", s, "jobs_per_s"))),
    ("W2 worker peak RSS (MiB)", lambda c, s: _rate(_m(c, "w2", s, "rss_mb"))),
    ("W3 enqueue→start p50/p95/p99/max (ms)", _latency),
    ("W4 drain, 2 processes (jobs/s)", lambda c, s: _rate(_m(c, "w4", s, "jobs_per_s"))),
    (
        "W4 / W2",
        lambda c, s: _ratio(_m(c, "w4", s, "jobs_per_s"), _m(c, "w2", s, "jobs_per_s")),
    ),
    ("W5 drain over history (jobs/s)", lambda c, s: _rate(_m(c, "w5", s, "jobs_per_s"))),
    (
        "W5 / W2",
        lambda c, s: _ratio(_m(c, "w5", s, "jobs_per_s"), _m(c, "w2", s, "jobs_per_s")),
    ),
    ("fork mode drain (jobs/s)", lambda c, s: _rate(_m(c, "fork", s, "jobs_per_s"))),
    ("fork mode overhead (ms/job)", _fork_overhead),
    ("W6 enqueue_sync, 8 threads (jobs/s)", lambda c, s: _rate(_m(c, "w6", s, "sync_per_s"))),
    ("W6 enqueue, 8 tasks on one loop (jobs/s)", lambda c, s: _rate(_m(c, "w6", s, "async_per_s"))),
    ("timecrisis PostgreSQL ÷ peer: W1 one at a time", _pg_over("w1", "one_per_s")),
    ("timecrisis PostgreSQL ÷ peer: W1 enqueue_many", _pg_over("w1", "many_per_s")),
    ("timecrisis PostgreSQL ÷ peer: W2 drain", _pg_over("w2", "jobs_per_s")),
    ("timecrisis PostgreSQL ÷ peer: W4 drain", _pg_over("w4", "jobs_per_s")),
]


def _systems(cases: Cases) -> list[str]:
    present = {s for per_system in cases.values() for s in per_system}
    return [s for s in SYSTEM_ORDER if s in present]


def _title(results: dict[str, Any]) -> str:
    meta = results["meta"]
    c = meta["counts"]
    mode = "quick" if meta["quick"] else "full"
    return (
        f"timecrisis benchmarks ({mode}: W2 {c['w2_jobs']:,} jobs, W4 {c['w4_jobs']:,}, "
        f"W5 over {c['w5_history']:,} completed, fork {c['fork_jobs']:,}; concurrency 10; "
        f"median of {c['runs']} runs; {meta['cpus']} CPUs, Python {meta['python']})"
    )


def show(results: dict[str, Any], console: Console) -> None:
    cases: Cases = results["cases"]
    systems = _systems(cases)
    table = Table(title=_title(results), title_justify="left")
    table.add_column("workload")
    for s in systems:
        table.add_column(STORES[s], justify="right")
    for label, cell in ROWS:
        cells = [cell(cases, s) for s in systems]
        if any(cells):
            table.add_row(label, *cells)
    console.print(table)
    failures = [
        (w, s, e) for w, per in cases.items() for s, case in per.items() for e in case["errors"]
    ]
    for w, s, e in failures:
        console.print(f"[red]{w} {s}: {e}[/]")
    targets = Table(title="targets", title_justify="left")
    for column in ("target", "measured", "result"):
        targets.add_column(column)
    for t in results["targets"]:
        met = {True: "[green]met[/]", False: "[red]missed[/]", None: "not measured"}[t["met"]]
        targets.add_row(t["target"], t["measured"], met)
    console.print(targets)


def markdown(results: dict[str, Any]) -> str:
    cases: Cases = results["cases"]
    systems = _systems(cases)
    lines = [
        _title(results),
        "",
        "| workload | " + " | ".join(STORES[s] for s in systems) + " |",
        "|---|" + "---:|" * len(systems),
    ]
    for label, cell in ROWS:
        cells = [cell(cases, s) for s in systems]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    for t in results["targets"]:
        met = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(lines)


def targets(cases: Cases) -> list[dict[str, Any]]:
    """The issues' targets, each with what was measured and whether it is met (None: not
    measured in this run). Issue 14's come first: timecrisis PostgreSQL against BullMQ and
    pgqueuer, in the same run; they replace the looser W3 and W4 targets of earlier issues."""
    out: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    def at_least(target: str, a: float | None, b: float | None, factor: float) -> None:
        """`a ≥ factor × b`, shown as both rates and their ratio."""
        met = None if a is None or b is None else a >= factor * b
        add(target, f"{_rate(a)} vs {_rate(b)} ({_ratio(a, b)})", met)

    def pg_vs(workload: str, key: str, peer: str) -> tuple[float | None, float | None]:
        return _m(cases, workload, "postgres", key), _m(cases, workload, peer, key)

    at_least("W2 PostgreSQL ≥ 1.0× BullMQ", *pg_vs("w2", "jobs_per_s", "bullmq"), 1.0)
    at_least("W2 PostgreSQL ≥ 2.5× pgqueuer", *pg_vs("w2", "jobs_per_s", "pgqueuer"), 2.5)
    pg2, pg4 = _m(cases, "w2", "postgres", "jobs_per_s"), _m(cases, "w4", "postgres", "jobs_per_s")
    at_least("W4 ≥ 1.7× W2 (timecrisis PostgreSQL)", pg4, pg2, 1.7)
    at_least(
        "W1 enqueue_many PostgreSQL ≥ 1.2× pgqueuer",
        *pg_vs("w1", "many_per_s", "pgqueuer"),
        1.2,
    )
    at_least(
        "W1 one at a time PostgreSQL ≥ 1.2× pgqueuer",
        *pg_vs("w1", "one_per_s", "pgqueuer"),
        1.2,
    )
    p50, p99 = _m(cases, "w3", "postgres", "p50_ms"), _m(cases, "w3", "postgres", "p99_ms")
    add(
        "W3 PostgreSQL p50 ≤ 1 ms, p99 ≤ 5 ms",
        "" if p50 is None or p99 is None else f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        None if p50 is None or p99 is None else p50 <= 1 and p99 <= 5,
    )

    lite2 = _m(cases, "w2", "sqlite", "jobs_per_s")
    peers = [v for p in PYTHON_PEERS if (v := _m(cases, "w2", p, "jobs_per_s"))]
    at_least("W2 PostgreSQL ≥ 3× the fastest Python peer", pg2, max(peers, default=None), 3)
    add("W2 PostgreSQL > 5,000 jobs/s", _rate(pg2), None if pg2 is None else pg2 > 5000)
    at_least("W2 SQLite within 20 % of PostgreSQL", lite2, pg2, 0.8)
    lite4 = _m(cases, "w4", "sqlite", "jobs_per_s")
    at_least("W4 ≥ 1.6× W2 (timecrisis SQLite)", lite4, lite2, 1.6)
    lite50 = _m(cases, "w3", "sqlite", "p50_ms")
    add(
        "W3 SQLite across processes p50 ≤ 50 ms",
        "" if lite50 is None else f"p50 {lite50:.1f} ms",
        None if lite50 is None else lite50 <= 50,
    )
    one, many = _m(cases, "w1", "postgres", "one_per_s"), _m(cases, "w1", "postgres", "many_per_s")
    add("W1 PostgreSQL one at a time ≥ 2,000/s", _rate(one), None if one is None else one >= 2000)
    add(
        "W1 PostgreSQL enqueue_many ≥ 40,000/s",
        _rate(many),
        None if many is None else many >= 40000,
    )
    for s in ("memory", "sqlite", "postgres"):
        overhead = _m(cases, "fork", s, "overhead_ms")
        add(
            f"fork mode overhead ≤ 3 ms/job ({STORES[s]})",
            "" if overhead is None else f"{overhead:.2f} ms",
            None if overhead is None else overhead <= 3,
        )
    for s in ("postgres", "sqlite"):
        rss = _m(cases, "w2", s, "rss_mb")
        add(
            f"W2 worker RSS ≤ 80 MB ({STORES[s]})",
            "" if rss is None else f"{rss:.0f} MiB",
            None if rss is None else rss * 1.048576 <= 80,
        )
        w2, w5 = _m(cases, "w2", s, "jobs_per_s"), _m(cases, "w5", s, "jobs_per_s")
        at_least(f"W5 within 10 % of W2 ({STORES[s]})", w5, w2, 0.9)
    return out
