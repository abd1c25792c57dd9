"""OpenTelemetry spans for enqueues and attempts, when `opentelemetry-api` is installed (the
`timecrisis[otel]` extra; docs/otel.md). Without it, this module is a no-op facade.

- **Producer**: `sending(type, count)` wraps the insert of `enqueue`/`enqueue_many` in a
  PRODUCER span `send <type>` and injects its context, through the global propagators (W3C
  `traceparent`/`tracestate` and `baggage` by default), into `headers`, which every job of the
  batch stores (`Job.headers`). One span per call, as the messaging conventions allow for a
  batch sent in one operation: its context is the creation context of each of its jobs.
- **Consumer**: `attempt(job, worker, state)` wraps each run of a handler in a CONSUMER span
  `process <type>`, whose parent is the job's stored context (so an attempt, and every span the
  handler makes, sits in the trace of the request that enqueued it) and which also links to it
  (the conventions require the link; the parent is their option for a single message). A job
  without headers (fired by a schedule, enqueued without tracing) starts a trace of its own:
  the span never inherits whatever context the worker's task happens to carry.

`opentelemetry` is imported on the first enqueue or attempt, not with `timecrisis`, and only
once: after that, a process without it pays one global read per call. The tracer comes from the
global tracer provider (`opentelemetry.trace.get_tracer("timecrisis")`), so the spans go
wherever the application's SDK sends its own; with the API alone they are non-recording and
nothing is stored. `OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=timecrisis` (or `*`) turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import TYPE_CHECKING, Any

from timecrisis.errors import Snooze
from timecrisis.execution.failures import failure_kind, failure_traceback
from timecrisis.execution.fork_errors import ForkedHandlerError

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from timecrisis.context import JobState
    from timecrisis.models import Job
    from timecrisis.storage.base import InsertResult

SYSTEM = "timecrisis"
DISABLE_VARIABLE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"

# Attribute names: the messaging semantic conventions, then timecrisis' own namespace.
MESSAGING_SYSTEM = "messaging.system"
OPERATION_NAME = "messaging.operation.name"
OPERATION_TYPE = "messaging.operation.type"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
CLIENT_ID = "messaging.client.id"
ERROR_TYPE = "error.type"
JOB_TYPE = "timecrisis.job.type"
ATTEMPT = "timecrisis.job.attempt"
WORKER = "timecrisis.worker"
SCHEDULE = "timecrisis.schedule.id"
FAILURE_KIND = "timecrisis.failure_kind"
DEDUPLICATED = "timecrisis.job.deduplicated"
RELEASED = "timecrisis.job.released"


class Sending:
    """What `enqueue_many` needs from its send span: the headers to store with each job, and
    where to report the ids once the store answered. This base class is the no-op one."""

    __slots__ = ("headers",)

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.headers = headers

    def sent(self, results: Sequence[InsertResult]) -> None:
        """The store inserted the batch (`results` in order)."""


_NOT_SENDING = Sending()
_NOT_TRACED: AbstractContextManager[Any] = contextlib.nullcontext(_NOT_SENDING)


def sending(job_type: str, count: int) -> AbstractContextManager[Sending]:
    """Around the insert of `count` jobs of `job_type` (count > 0)."""
    otel = _instrumentation()
    if otel is None:
        return _NOT_TRACED
    return otel.sending(job_type, count)


def attempt(job: Job, worker: str, state: JobState) -> AbstractContextManager[Any]:
    """Around one run of `job`'s handler on `worker` (`job.attempts` is this attempt)."""
    otel = _instrumentation()
    if otel is None:
        return _NOT_TRACED
    return otel.attempt(job, worker, state)


# ---- loading ---------------------------------------------------------------------------------

_loaded = False
_otel: _Otel | None = None


def _instrumentation() -> _Otel | None:
    global _loaded, _otel
    if not _loaded:
        _otel = _load()
        _loaded = True
    return _otel


def _load() -> _Otel | None:
    disabled = {name.strip() for name in os.environ.get(DISABLE_VARIABLE, "").split(",")}
    if SYSTEM in disabled or "*" in disabled:
        return None
    try:
        import opentelemetry.trace  # noqa: F401 - only asks whether the API is installed
    except ImportError:
        return None
    return _Otel()


def _reset() -> None:
    """Load again on next use (tests: after changing the environment)."""
    global _loaded, _otel
    _loaded = False
    _otel = None


def _version() -> str:
    try:
        return version("timecrisis")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "0"


# ---- the spans -------------------------------------------------------------------------------


class _Sent(Sending):
    __slots__ = ("_count", "_span")

    def __init__(self, span: Span, headers: dict[str, str] | None, count: int) -> None:
        super().__init__(headers)
        self._span = span
        self._count = count

    def sent(self, results: Sequence[InsertResult]) -> None:
        if self._count == 1 and results:  # message ids only describe single-message spans
            self._span.set_attribute(MESSAGE_ID, results[0].id)
            if not results[0].created:  # the unique key was held: that job's id came back
                self._span.set_attribute(DEDUPLICATED, True)


class _Otel:
    """The instrumentation proper; built once, after `opentelemetry` imported."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace

        self.context = context
        self._propagate = propagate
        self._trace = trace
        self.tracer = trace.get_tracer(SYSTEM, _version())
        self._api_tracers = (trace.ProxyTracer, trace.NoOpTracer)
        self._api_providers = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)

    def _api_only(self) -> bool:
        """No SDK behind the tracer (checked per call: an application may install one later).
        The API's tracer then makes each span a non-recording copy of its parent's context
        (`NoOpTracer.start_span`), so a span changes nothing but costs its making: 8 of the 12
        us of an enqueue's instrumentation, 3 of the 5 of an attempt's. The context is still
        propagated, exactly as through such a span."""
        return isinstance(self.tracer, self._api_tracers) and isinstance(
            self._trace.get_tracer_provider(), self._api_providers
        )

    @contextlib.contextmanager
    def sending(self, job_type: str, count: int) -> Iterator[Sending]:
        if self._api_only():
            headers: dict[str, str] = {}
            self._propagate.inject(headers)  # the caller's context, as a no-op span carries it
            yield Sending(headers or None)
            return
        attributes: dict[str, str | int] = {
            MESSAGING_SYSTEM: SYSTEM,
            OPERATION_NAME: "send",
            OPERATION_TYPE: "send",
            DESTINATION: job_type,
            JOB_TYPE: job_type,
        }
        if count > 1:
            attributes[BATCH_COUNT] = count
        with self.tracer.start_as_current_span(
            f"send {job_type}", kind=self._trace.SpanKind.PRODUCER, attributes=attributes
        ) as span:
            headers = {}
            self._propagate.inject(headers)  # nothing when the span does not record
            yield _Sent(span, headers or None, count)

    def attempt(self, job: Job, worker: str, state: JobState) -> _Attempt | _Current:
        trace = self._trace
        # The job's stored context, or an empty one: never the worker task's own.
        empty = self.context.Context()
        parent = empty if job.headers is None else self._propagate.extract(job.headers, empty)
        if self._api_only():
            return _Current(self, parent)
        creation = trace.get_current_span(parent).get_span_context()
        attributes: dict[str, str | int] = {
            MESSAGING_SYSTEM: SYSTEM,
            OPERATION_NAME: "process",
            OPERATION_TYPE: "process",
            DESTINATION: job.type,
            MESSAGE_ID: job.id,
            CLIENT_ID: worker,
            JOB_TYPE: job.type,
            ATTEMPT: job.attempts,
            WORKER: worker,
        }
        if job.scheduled_job_id is not None:
            attributes[SCHEDULE] = job.scheduled_job_id
        span = self.tracer.start_span(
            f"process {job.type}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=[trace.Link(creation)] if creation.is_valid else None,
        )
        # Current while the handler runs, over the enqueuer's context: its baggage too.
        return _Attempt(self, span, trace.set_span_in_context(span, parent), state)

    def failed(self, span: Span, exc: Exception) -> None:
        """The attempt failed as the worker records it: same kind, same traceback."""
        span.set_attribute(FAILURE_KIND, str(failure_kind(exc)))
        span.set_attribute(ERROR_TYPE, _error_type(exc))
        stack = failure_traceback(exc)  # the handler's frames, the child's own in fork mode
        extra = None if stack is None else {"exception.stacktrace": stack}
        span.record_exception(exc, attributes=extra)
        self._error(span, f"{type(exc).__name__}: {exc}")

    def interrupted(self, span: Span, state: JobState) -> None:
        """The run's task was cancelled: its lease was lost (a failure), `cancel_job(
        terminate=True)` interrupted it, or `stop()` gave it back to the queue (neither is an
        error)."""
        if state.lease_lost:
            span.set_attribute(FAILURE_KIND, "lease_expired")
            span.set_attribute(ERROR_TYPE, "lease_expired")
            self._error(span, "the job's lease was lost")
        elif state.terminate:
            span.set_attribute(FAILURE_KIND, "canceled")
        else:
            span.set_attribute(RELEASED, True)

    def _error(self, span: Span, description: str) -> None:
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))


class _Current:
    """An attempt without an SDK (`_Otel._api_only`): its stored context current while the
    handler runs, as the non-recording span's would be."""

    __slots__ = ("_context", "_otel", "_token")

    def __init__(self, otel: _Otel, context: Context) -> None:
        self._otel = otel
        self._context = context
        self._token: Token[Context] | None = None

    def __enter__(self) -> None:
        self._token = self._otel.context.attach(self._context)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            self._otel.context.detach(self._token)


class _Attempt:
    """The span of one attempt, current between enter and exit. A class, not a generator: an
    exception thrown into a generator gains its frame, and the recorded stack trace must be the
    run's own (`failure_traceback`), from the handler's frames on."""

    __slots__ = ("_context", "_otel", "_span", "_state", "_token")

    def __init__(self, otel: _Otel, span: Span, context: Context, state: JobState) -> None:
        self._otel = otel
        self._span = span
        self._context = context
        self._state = state
        self._token: Token[Context] | None = None

    def __enter__(self) -> None:
        self._token = self._otel.context.attach(self._context)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span, otel = self._span, self._otel
        try:
            if exc is None:
                if self._state.cancelled:  # returned after cancel_job: the job ends canceled
                    span.set_attribute(FAILURE_KIND, "canceled")
            elif isinstance(exc, asyncio.CancelledError):
                otel.interrupted(span, self._state)
            elif isinstance(exc, Snooze):  # the handler gave the job back: nothing failed
                span.set_attribute(RELEASED, True)
            elif isinstance(exc, Exception):
                otel.failed(span, exc)
        finally:
            if self._token is not None:
                otel.context.detach(self._token)
            span.end()


def _error_type(exc: BaseException) -> str:
    """The exception's class as `module.QualName` (`ValueError` for a builtin), the
    original's for an exception re-created from a fork-mode child."""
    if isinstance(exc, ForkedHandlerError):
        name = exc.remote_type
    else:
        cls = type(exc)
        name = f"{cls.__module__}.{cls.__qualname__}"
    return name.removeprefix("builtins.")
