"""OpenTelemetry at the library's defaults, on every store (docs/otel.md): a job enqueued inside
a request span is sent under it, and its attempt runs as a CONSUMER span that is the send span's
child and links to it; a failed attempt is an ERROR span with the run's failure kind."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from tests.defaults.conftest import DefaultSchedulerFactory
from tests.otel.support import Traced, attrs, install
from timecrisis import FailureKind, JobContext, JobStatus


class Invoice(BaseModel):
    number: int


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Traced:
    return install(monkeypatch)


def _ids(span: ReadableSpan | None) -> tuple[int, int] | None:
    context = None if span is None else span.context
    return None if context is None else (context.trace_id, context.span_id)


async def test_an_attempt_joins_the_trace_of_the_request_that_enqueued_it(
    default_scheduler: DefaultSchedulerFactory, traced: Traced
) -> None:
    scheduler = default_scheduler()

    # retry_delay is the job's own backoff, not a loop interval: one quick retry.
    @scheduler.job("invoice", concurrency=None, max_retries=1, retry_delay=0.05)
    async def invoice(data: Invoice, ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("printer on fire")

    async with scheduler:
        with traced.app.start_as_current_span("POST /invoices") as request:
            job_id = await scheduler.enqueue("invoice", {"number": 1})
        job = await scheduler.wait_for_job(job_id, timeout=10)

    assert job.status is JobStatus.COMPLETED
    send = traced.one("send invoice")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    first, second = traced.consumers()
    for span in (first, second):
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is not None and (span.parent.trace_id, span.parent.span_id) == _ids(send)
        assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
            _ids(send)
        ]
        assert attrs(span)["messaging.message.id"] == job_id
        assert attrs(span)["timecrisis.worker"] == scheduler.worker
    assert first.status.status_code is StatusCode.ERROR
    assert attrs(first)["timecrisis.failure_kind"] == FailureKind.ERROR
    assert second.status.status_code is StatusCode.UNSET
    assert "timecrisis.failure_kind" not in attrs(second)
