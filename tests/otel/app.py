"""The two processes of `test_processes.py`, each configuring OpenTelemetry's SDK the way an
application does (a global tracer provider, here with the in-memory exporter), then writing the
spans it finished to a JSON file (`ReadableSpan.to_json()`, one object per span).

    python -m tests.otel.app produce STORE_URL SPANS_FILE       # prints the job id
    python -m tests.otel.app work STORE_URL SPANS_FILE JOB_ID   # prints the job's status
    python -m tests.otel.app tree SPANS_FILE...                 # prints the span tree

`produce` enqueues one `checkout` job inside a request span; `work` runs a worker until that
job has finished: its first attempt fails, its second succeeds, each making a span of its own.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from timecrisis import JobContext, JobScheduler, storage_from_url

Span = dict[str, Any]


class Order(BaseModel):
    order_id: int


def _tracing(service: str) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def _scheduler(url: str, worker: str) -> JobScheduler:
    scheduler = JobScheduler(storage_from_url(url), worker=worker, job_processing_interval=0.2)
    tracer = trace.get_tracer("shop")

    @scheduler.job("checkout", concurrency=None, max_retries=1, retry_delay="50ms")
    async def checkout(data: Order, ctx: JobContext) -> str:
        with tracer.start_as_current_span("charge card"):
            if ctx.attempt == 1:
                raise ConnectionError("payment gateway timed out")
        return f"order {data.order_id} paid"

    return scheduler


def _dump(exporter: InMemorySpanExporter, path: str) -> None:
    spans = [json.loads(span.to_json()) for span in exporter.get_finished_spans()]
    pathlib.Path(path).write_text(json.dumps(spans, indent=1))


async def produce(url: str, spans_file: str) -> None:
    exporter = _tracing("shop-web")
    scheduler = _scheduler(url, "web-1")  # never started: a producer only
    with trace.get_tracer("shop").start_as_current_span("POST /orders"):
        job_id = await scheduler.enqueue("checkout", {"order_id": 42})
    await scheduler.close()
    _dump(exporter, spans_file)
    print(job_id)


async def work(url: str, spans_file: str, job_id: str) -> None:
    exporter = _tracing("shop-worker")
    scheduler = _scheduler(url, "worker-1")
    async with scheduler:
        job = await scheduler.wait_for_job(job_id, timeout=30)
    await scheduler.close()
    _dump(exporter, spans_file)
    print(job.status)


def tree(spans: list[Span]) -> str:
    """The spans as an indented tree, children in start order; one line per span with its
    service, kind, status and the attributes that tell attempts apart."""
    ids = {span["context"]["span_id"] for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start_time"]):
            lines.append("  " * depth + _line(span))
            walk(span["context"]["span_id"], depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def _line(span: Span) -> str:
    kind = span["kind"].removeprefix("SpanKind.")
    parts = [span["name"], f"[{span['resource']['attributes']['service.name']}]", kind]
    attributes = span["attributes"]
    for key in ("timecrisis.job.attempt", "timecrisis.failure_kind", "error.type"):
        if key in attributes:
            parts.append(f"{key.rsplit('.', 1)[-1]}={attributes[key]}")
    if span["links"]:
        parts.append("links=" + ",".join(link["context"]["span_id"] for link in span["links"]))
    if span["status"]["status_code"] == "ERROR":
        parts.append(f"ERROR({span['status']['description']})")
    return " ".join(parts)


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "produce":
        asyncio.run(produce(*args))
    elif mode == "work":
        asyncio.run(work(*args))
    elif mode == "tree":
        print(tree([span for path in args for span in json.loads(pathlib.Path(path).read_text())]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
