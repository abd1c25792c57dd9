"""OpenTelemetry in one process (docs/otel.md): a PRODUCER span per enqueue whose context the
jobs store, a CONSUMER span per attempt that is its child and links to it, errors recorded with
the run's failure kind; handler spans and baggage inside the attempt; nothing for a job enqueued
without tracing. End to end through the public API, on every store where the store matters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.fork import handlers
from tests.otel.support import Traced, attrs
from tests.scheduler.conftest import FAST, Payload, SchedulerFactory, eventually
from timecrisis import (
    InMemoryJobStorage,
    JobContext,
    JobDefinition,
    JobScheduler,
    JobStatus,
    JobStorage,
    NonRetryableError,
    Snooze,
    StorageError,
    _tracing,
)
from timecrisis.context import JobState
from timecrisis.storage._common import new_id
from timecrisis.storage.base import NewJob


def _ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def _parent(span: ReadableSpan) -> tuple[int, int] | None:
    return None if span.parent is None else (span.parent.trace_id, span.parent.span_id)


def _links(span: ReadableSpan) -> list[tuple[int, int]]:
    return [(link.context.trace_id, link.context.span_id) for link in span.links]


async def test_an_attempt_is_a_child_of_its_enqueue_and_links_to_it(
    store: JobStorage, make_scheduler: SchedulerFactory, traced: Traced
) -> None:
    scheduler = make_scheduler(store, worker="w-1")

    @scheduler.job("email", concurrency=None)
    async def email(data: Payload, ctx: JobContext) -> None:
        with traced.app.start_as_current_span("smtp"):
            pass

    async with scheduler:
        with traced.app.start_as_current_span("POST /signup"):
            job_id = await scheduler.enqueue("email", {"n": 1})
        job = await scheduler.wait_for_job(job_id, timeout=10)

    assert job.status is JobStatus.COMPLETED
    request, send, process = (
        traced.one("POST /signup"),
        traced.one("send email"),
        traced.one("process email"),
    )
    smtp = traced.one("smtp")
    assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    # One trace: the request, its enqueue, the attempt, and what the handler did.
    assert _parent(send) == _ids(request)
    assert _parent(process) == _ids(send)
    assert _links(process) == [_ids(send)]
    assert _parent(smtp) == _ids(process)
    # The job stores the W3C context of the send span.
    trace_id, span_id = _ids(send)
    assert job.headers is not None
    assert job.headers["traceparent"].split("-")[1:3] == [f"{trace_id:032x}", f"{span_id:016x}"]
    assert attrs(send) == {
        "messaging.system": "timecrisis",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": "email",
        "messaging.message.id": job_id,
        "timecrisis.job.type": "email",
    }
    assert attrs(process) == {
        "messaging.system": "timecrisis",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "email",
        "messaging.message.id": job_id,
        "messaging.client.id": "w-1",
        "timecrisis.job.type": "email",
        "timecrisis.job.attempt": 1,
        "timecrisis.worker": "w-1",
    }
    assert process.status.status_code is StatusCode.UNSET


def _charge(order: int) -> None:
    raise ValueError(f"card declined for order {order}")  # the line the traceback names


async def test_a_failed_attempt_records_the_error_and_its_failure_kind(
    store: JobStorage, make_scheduler: SchedulerFactory, traced: Traced
) -> None:
    scheduler = make_scheduler(store, worker="w-1")

    @scheduler.job("charge", concurrency=None, max_retries=1, retry_delay=0.01)
    async def charge(data: Payload, ctx: JobContext) -> None:
        _charge(data.n)

    async with scheduler:
        job_id = await scheduler.enqueue("charge", {"n": 7})
        job = await scheduler.wait_for_job(job_id, timeout=10)

    assert job.status is JobStatus.FAILED
    send = traced.one("send charge")
    attempts = traced.consumers()
    assert [attrs(s)["timecrisis.job.attempt"] for s in attempts] == [1, 2]
    runs = await scheduler.get_job_runs(job_id)
    for span, run in zip(attempts, runs, strict=True):
        assert _parent(span) == _ids(send) and _links(span) == [_ids(send)]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: card declined for order 7" == run.error
        assert attrs(span)["timecrisis.failure_kind"] == "error" == run.failure_kind
        assert attrs(span)["error.type"] == "ValueError"
        [event] = span.events
        event_attrs = dict(event.attributes or {})
        assert event.name == "exception"
        assert event_attrs["exception.type"] == "ValueError"
        assert event_attrs["exception.message"] == "card declined for order 7"
        # The run's own traceback: from the handler's frame on, not the worker's plumbing.
        assert event_attrs["exception.stacktrace"] == run.traceback
        assert "in _charge" in str(run.traceback)


class _Declined(Exception):
    pass


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("non_retryable", "timecrisis.errors.NonRetryableError"),
        ("timeout", "timecrisis.errors.JobTimeoutError"),
        ("error", f"{__name__}._Declined"),
    ],
)
async def test_each_failure_kind_reads_as_the_run_records_it(
    traced: Traced, kind: str, error_type: str
) -> None:
    scheduler = JobScheduler(InMemoryJobStorage(), **FAST)

    @scheduler.job("task", concurrency=None, timeout=0.05)
    async def task(data: Payload, ctx: JobContext) -> None:
        if kind == "non_retryable":
            raise NonRetryableError("gone")
        if kind == "timeout":
            await asyncio.sleep(30)
        raise _Declined("no")

    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("task", {}), timeout=10)

    [run] = await scheduler.get_job_runs(job.id)
    [span] = traced.consumers()
    assert attrs(span)["timecrisis.failure_kind"] == kind == run.failure_kind
    assert attrs(span)["error.type"] == error_type
    assert span.status.status_code is StatusCode.ERROR


async def test_a_batch_is_one_send_span_whose_context_every_job_carries(
    store: JobStorage, make_scheduler: SchedulerFactory, traced: Traced
) -> None:
    scheduler = make_scheduler(store)

    @scheduler.job("thumb", concurrency=None)
    async def thumb(data: Payload, ctx: JobContext) -> None:
        pass

    async with scheduler:
        ids = await scheduler.enqueue_many("thumb", [{"n": i} for i in range(3)])
        for job_id in ids:
            await scheduler.wait_for_job(job_id, timeout=10)

    send = traced.one("send thumb")
    assert attrs(send)["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in attrs(send)  # it names one message only
    processed = traced.named("process thumb")
    assert sorted(str(attrs(s)["messaging.message.id"]) for s in processed) == sorted(ids)
    for span in processed:
        assert _parent(span) == _ids(send) and _links(span) == [_ids(send)]


async def test_a_sync_handler_runs_inside_its_attempt_span_with_the_enqueuers_baggage(
    traced: Traced,
) -> None:
    scheduler = JobScheduler(InMemoryJobStorage(), **FAST)
    seen: list[object] = []

    @scheduler.job("report", concurrency=None)
    def report(data: Payload, ctx: JobContext) -> None:  # a thread
        with traced.app.start_as_current_span("render"):
            seen.append(baggage.get_baggage("tenant"))

    async with scheduler:
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            job_id = await scheduler.enqueue("report", {})
        finally:
            context.detach(token)
        job = await scheduler.wait_for_job(job_id, timeout=10)

    assert job.headers is not None and job.headers["baggage"] == "tenant=acme"
    assert seen == ["acme"]
    assert _parent(traced.one("render")) == _ids(traced.one("process report"))


async def test_a_job_without_headers_starts_a_trace_of_its_own(traced: Traced) -> None:
    """A job fired by a schedule carries no context; neither does one stored by a process that
    did not trace. Its attempt is a root span, even on a worker started inside a span (whose
    tasks inherit it)."""
    storage = InMemoryJobStorage()
    scheduler = JobScheduler(storage, **FAST)

    @scheduler.job("tick", concurrency=None)
    async def tick(data: Payload, ctx: JobContext) -> None:
        pass

    with traced.app.start_as_current_span("app startup") as startup:
        await scheduler.start()
    try:
        [untraced] = await storage.insert_jobs([NewJob(id=new_id(), type="tick", data={})])
        at = datetime.now(UTC) + timedelta(milliseconds=200)
        await scheduler.schedule(
            "once", "tick", {}, schedule_type="exact", schedule_value=at.isoformat()
        )
        await scheduler.wait_for_job(untraced.id, timeout=10)
        await eventually(lambda: _async(len(traced.named("process tick")) == 2))
    finally:
        await scheduler.stop()

    spans = {attrs(s)["messaging.message.id"]: s for s in traced.named("process tick")}
    fired = next(s for job_id, s in spans.items() if job_id != untraced.id)
    schedule = await scheduler.get_scheduled_job("once")
    assert schedule is not None
    assert attrs(fired)["timecrisis.schedule.id"] == schedule.id
    for span in spans.values():
        assert span.parent is None and span.links == ()
        assert _ids(span)[0] != startup.get_span_context().trace_id
    assert traced.named("send tick") == []


async def _async(value: bool) -> bool:
    return value


async def test_an_enqueue_that_hits_a_held_unique_key_says_so(traced: Traced) -> None:
    scheduler = JobScheduler(InMemoryJobStorage(), **FAST)
    _register_noop(scheduler, "sync-account")  # never started: a producer only

    first = await scheduler.enqueue("sync-account", {}, unique_key="acct-1")
    again = await scheduler.enqueue("sync-account", {}, unique_key="acct-1")

    assert first == again
    created, deduplicated = traced.named("send sync-account")
    assert attrs(created)["messaging.message.id"] == first
    assert "timecrisis.job.deduplicated" not in attrs(created)
    assert attrs(deduplicated)["messaging.message.id"] == first
    assert attrs(deduplicated)["timecrisis.job.deduplicated"] is True


def _register_noop(scheduler: JobScheduler, job_type: str) -> None:
    @scheduler.job(job_type, concurrency=None)
    async def noop(data: Payload, ctx: JobContext) -> None:
        pass


@pytest.fixture
def disabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "requests, timecrisis")
    _tracing._reset()
    yield
    monkeypatch.undo()
    _tracing._reset()  # the next test loads the instrumentation again


async def test_the_standard_variable_turns_it_off(traced: Traced, disabled: None) -> None:
    scheduler = JobScheduler(InMemoryJobStorage(), **FAST)
    _register_noop(scheduler, "quiet")

    async with scheduler:
        with traced.app.start_as_current_span("request"):
            job = await scheduler.wait_for_job(await scheduler.enqueue("quiet", {}), timeout=10)

    assert job.headers is None
    assert [s.name for s in traced.spans()] == ["request"]


async def test_with_the_api_alone_nothing_is_recorded_or_stored() -> None:
    """No SDK configured (the API's default provider): non-recording spans, no headers."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("a test in this process set the global tracer provider")
    scheduler = JobScheduler(InMemoryJobStorage(), **FAST)
    _register_noop(scheduler, "quiet")

    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("quiet", {}), timeout=10)

    assert job.status is JobStatus.COMPLETED and job.headers is None


async def test_with_the_api_alone_the_callers_context_still_travels_with_the_job() -> None:
    """No SDK: no span is made, but a context the caller carries (one that a framework's
    instrumentation extracted from an incoming request, with the API alone) is stored with the
    job and current while its handler runs, as the API's non-recording spans carry it."""
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider), (
        "no test in this process may set the global tracer provider"
    )
    upstream = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    seen: list[tuple[int, object]] = []
    scheduler = JobScheduler(InMemoryJobStorage(), **FAST)

    @scheduler.job("seen", concurrency=None)
    async def record(data: Payload, ctx: JobContext) -> None:
        current = trace.get_current_span().get_span_context()
        seen.append((current.trace_id, baggage.get_baggage("tenant")))

    async with scheduler:
        carried = baggage.set_baggage(
            "tenant", "acme", trace.set_span_in_context(trace.NonRecordingSpan(upstream))
        )
        token = context.attach(carried)
        try:
            job_id = await scheduler.enqueue("seen", {})
        finally:
            context.detach(token)
        job = await scheduler.wait_for_job(job_id, timeout=10)

    assert job.headers is not None
    assert job.headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert job.headers["baggage"] == "tenant=acme"
    assert seen == [(upstream.trace_id, "acme")]


async def test_an_enqueue_the_store_refuses_is_an_error_span(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = InMemoryJobStorage()
    scheduler = JobScheduler(storage, **FAST)
    _register_noop(scheduler, "lost")

    async def refuse(*args: object, **kwargs: object) -> None:
        raise StorageError("disk full")

    monkeypatch.setattr(storage, "insert_jobs", refuse)
    with pytest.raises(StorageError, match="disk full"):
        await scheduler.enqueue("lost", {})

    send = traced.one("send lost")
    assert send.status.status_code is StatusCode.ERROR
    assert [e.name for e in send.events] == ["exception"]


@pytest.mark.parametrize(
    ("flag", "expected", "status"),
    [
        ("lease_lost", {"timecrisis.failure_kind": "lease_expired"}, StatusCode.ERROR),
        ("terminate", {"timecrisis.failure_kind": "canceled"}, StatusCode.UNSET),
        ("shutting_down", {"timecrisis.job.released": True}, StatusCode.UNSET),
    ],
)
async def test_an_interrupted_attempt_says_why(
    traced: Traced, flag: str, expected: dict[str, object], status: StatusCode
) -> None:
    """The worker cancels a run's task when its lease is lost, when `cancel_job(terminate=True)`
    interrupts it, and when `stop()` gives it back: only the first is a failure."""
    storage = InMemoryJobStorage()
    [result] = await storage.insert_jobs([NewJob(id=new_id(), type="t", data={})])
    job = await storage.get_job(result.id)
    assert job is not None
    state = JobState()
    setattr(state, flag, True)

    with pytest.raises(asyncio.CancelledError), _tracing.attempt(job, "w", state):
        raise asyncio.CancelledError

    [span] = traced.consumers()
    assert {k: v for k, v in attrs(span).items() if k in expected} == expected
    assert span.status.status_code is status
    assert span.end_time is not None
    assert trace.get_current_span() is trace.INVALID_SPAN  # the attempt's context was detached


async def test_a_fork_mode_failure_reads_as_the_childs_own(traced: Traced) -> None:
    """The attempt span is in the worker, around the child; a handler's error keeps its own
    class and the traceback printed in the child, a dead child is `crashed`."""
    scheduler = JobScheduler(InMemoryJobStorage(), **FAST)
    scheduler.register_job(
        JobDefinition(
            type="crash", schema=handlers.Work, handle=handlers.crash, concurrency=None,
            fork_mode=True,
        )
    )  # fmt: skip
    async with scheduler:
        raised = await scheduler.enqueue("crash", {"kind": "raise", "n": 7})
        exited = await scheduler.enqueue("crash", {"kind": "exit"})
        for job_id in (raised, exited):
            await scheduler.wait_for_job(job_id, timeout=30)

    spans = {attrs(s)["messaging.message.id"]: s for s in traced.named("process crash")}
    [run] = await scheduler.get_job_runs(raised)
    assert attrs(spans[raised])["timecrisis.failure_kind"] == "error"
    assert attrs(spans[raised])["error.type"] == "ValueError"
    [event] = spans[raised].events
    assert dict(event.attributes or {})["exception.stacktrace"] == run.traceback
    assert "in crash" in str(run.traceback)
    assert attrs(spans[exited])["timecrisis.failure_kind"] == "crashed"
    assert spans[exited].status.status_code is StatusCode.ERROR


async def test_a_snoozed_attempt_is_released_not_an_error(traced: Traced) -> None:
    scheduler = JobScheduler(InMemoryJobStorage(), **FAST)
    calls = 0

    @scheduler.job("poll", concurrency=None)
    async def poll(data: Payload, ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Snooze(0)

    async with scheduler:
        job = await scheduler.wait_for_job(await scheduler.enqueue("poll", {}), timeout=10)

    assert job.status is JobStatus.COMPLETED
    snoozed, finished = traced.consumers()
    assert attrs(snoozed)["timecrisis.job.released"] is True
    assert "timecrisis.failure_kind" not in attrs(snoozed)
    assert snoozed.status.status_code is StatusCode.UNSET
    assert finished.status.status_code is StatusCode.UNSET
