"""`/metrics`: Prometheus' text format read from the store at scrape time."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.dashboard.support import Seeded, claim_one, client, new_job
from timecrisis.clock import ManualClock
from timecrisis.dashboard import create_app
from timecrisis.storage.base import ClaimParams, JobStorage


async def scrape(storage: JobStorage) -> tuple[str, dict[str, list[Sample]]]:
    async with client(create_app(storage)) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f.samples for f in text_string_to_metric_families(response.text)}
    return response.headers["content-type"], families


def value(samples: list[Sample], name: str, **labels: str) -> float:
    [match] = [s.value for s in samples if s.name == name and s.labels == labels]
    return match


async def test_metrics_use_the_text_format_and_the_timecrisis_prefix(
    storage: JobStorage, seeded: Seeded
) -> None:
    content_type, families = await scrape(storage)

    assert content_type.startswith("text/plain; version=0.0.4")
    assert families and all(name.startswith("timecrisis_") for name in families)


async def test_job_counts_are_read_from_the_store_by_type_and_status(
    storage: JobStorage, seeded: Seeded
) -> None:
    _, families = await scrape(storage)

    jobs = families["timecrisis_jobs"]
    assert value(jobs, "timecrisis_jobs", type="email", status="pending") == 4
    assert value(jobs, "timecrisis_jobs", type="email", status="completed") == 1
    assert value(jobs, "timecrisis_jobs", type="email", status="failed") == 1
    assert value(jobs, "timecrisis_jobs", type="report", status="running") == 1
    dead = families["timecrisis_dead_letter_jobs"]
    assert value(dead, "timecrisis_dead_letter_jobs", type="email") == 1


async def test_pending_and_running_jobs_per_queue_and_the_paused_names_are_exposed(
    storage: JobStorage, seeded: Seeded
) -> None:
    """Flow control: a queue that no worker serves shows its jobs waiting."""
    await storage.insert_jobs([new_job("email", {"n": 7}, queue="nobody-serves-this")])
    await storage.pause("nobody-serves-this")

    _, families = await scrape(storage)

    queues = families["timecrisis_queue_jobs"]
    metrics = await storage.get_metrics()
    assert value(queues, "timecrisis_queue_jobs", queue="nobody-serves-this", status="pending") == 1
    assert value(queues, "timecrisis_queue_jobs", queue="default", status="running") == (
        metrics.queues["default"].running
    )
    paused = families["timecrisis_paused"]
    assert [(s.labels, s.value) for s in paused] == [({"name": "nobody-serves-this"}, 1)]


async def test_runs_claims_retries_lease_losses_and_the_duration_histogram(
    storage: JobStorage, seeded: Seeded, clock: ManualClock
) -> None:
    # A lease loss, then its retry: a job whose worker vanished.
    lost = new_job("sync", {"n": 1}, max_retries=1, backoff_strategy="linear", retry_delay=1)
    await storage.insert_jobs([lost])
    await storage.claim_jobs(
        ClaimParams(
            worker="worker-9", limit=1, lease_ttl=timedelta(seconds=30), type_limits={"sync": None}
        )
    )
    clock.advance(30)
    await storage.recover_expired_leases()
    clock.advance(2)
    await claim_one(storage, "sync", worker="worker-1")

    _, families = await scrape(storage)

    assert value(families["timecrisis_job_claims"], "timecrisis_job_claims", type="email") == 2
    assert value(families["timecrisis_job_claims"], "timecrisis_job_claims", type="sync") == 2
    retries = families["timecrisis_job_retries"]
    assert value(retries, "timecrisis_job_retries", type="sync") == 1
    assert value(retries, "timecrisis_job_retries", type="email") == 0
    losses = families["timecrisis_job_lease_losses"]
    assert value(losses, "timecrisis_job_lease_losses", type="sync") == 1
    runs = families["timecrisis_job_runs"]
    assert value(runs, "timecrisis_job_runs", type="sync", status="running") == 1
    # Failed runs by kind, read from the store's failure_kind (never from the error text).
    kinds = families["timecrisis_job_failures"]
    assert value(kinds, "timecrisis_job_failures", type="sync", kind="lease_expired") == 1
    assert value(kinds, "timecrisis_job_failures", type="email", kind="non_retryable") == 1
    assert not [s for s in kinds if s.labels == {"type": "sync", "kind": "error"}]
    histogram = families["timecrisis_job_run_duration_seconds"]
    bucket = "timecrisis_job_run_duration_seconds_bucket"
    assert value(histogram, bucket, type="email", status="completed", le="1.0") == 0
    assert value(histogram, bucket, type="email", status="completed", le="2.5") == 1
    assert value(histogram, bucket, type="email", status="completed", le="+Inf") == 1
    assert value(histogram, bucket, type="sync", status="failed", le="30.0") == 1
    gsum = families["timecrisis_job_run_duration_seconds_gsum"]
    assert (
        value(gsum, "timecrisis_job_run_duration_seconds_gsum", type="email", status="completed")
        == 2.0
    )


async def test_leader_status_and_per_worker_running_jobs(
    storage: JobStorage, seeded: Seeded
) -> None:
    _, families = await scrape(storage)

    assert value(families["timecrisis_leader_elected"], "timecrisis_leader_elected") == 1
    leaders = families["timecrisis_worker_is_leader"]
    assert value(leaders, "timecrisis_worker_is_leader", worker="worker-1") == 1
    assert value(leaders, "timecrisis_worker_is_leader", worker="worker-2") == 0
    running = families["timecrisis_worker_running_jobs"]
    assert value(running, "timecrisis_worker_running_jobs", worker="worker-2") == 1
    assert value(families["timecrisis_workers"], "timecrisis_workers") == 2


async def test_a_scrape_registers_nothing_in_the_global_registry(
    storage: JobStorage, seeded: Seeded
) -> None:
    await scrape(storage)

    assert not [m for m in REGISTRY.collect() if m.name.startswith("timecrisis_")]


async def test_jobs_finished_in_the_last_five_minutes_give_the_throughput(
    storage: JobStorage, seeded: Seeded, clock: ManualClock
) -> None:
    _, recent = await scrape(storage)
    clock.advance(timedelta(minutes=5))  # both finished jobs leave the window
    _, later = await scrape(storage)

    name = "timecrisis_jobs_finished_5m"
    assert value(recent[name], name, status="completed") == 1
    assert value(recent[name], name, status="failed") == 1
    assert value(recent[name], name, status="canceled") == 0
    assert value(later[name], name, status="completed") == 0
