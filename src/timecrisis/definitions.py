"""Job definitions: a type name, a pydantic schema for its payload, a handler and its defaults."""

from __future__ import annotations

import builtins
import inspect
import json
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from pydantic import BaseModel, ValidationError

from timecrisis._bounds import MAX_RETRIES, check_flow_name, json_text, text_problem
from timecrisis.durations import Duration, parse_job_duration
from timecrisis.errors import JobValidationError
from timecrisis.models import MAX_PRIORITY, MIN_PRIORITY, BackoffStrategy, JsonValue
from timecrisis.rate_limits import RateLimit

if TYPE_CHECKING:
    from timecrisis.context import JobContext

ModelT = TypeVar("ModelT", bound=BaseModel)

Handler: TypeAlias = Callable[[Any, "JobContext"], Awaitable[Any] | Any]
"""`handle(data, ctx)`: `async def` runs on the event loop, a plain `def` in a worker thread."""

MAX_KEY_CONCURRENCY = 1_000_000
"""The largest `key_concurrency`: far inside every store's 32-bit integers."""

BACKOFF_STRATEGIES: tuple[BackoffStrategy, ...] = ("exponential", "linear")


def check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobValidationError(f"priority must be an int, got {value!r}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise JobValidationError(
            f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {value}"
        )
    return value


def check_max_retries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise JobValidationError(
            f"max_retries must be an int from 0 to {MAX_RETRIES}, got {value!r}"
        )
    return value


def check_backoff(value: object) -> BackoffStrategy:
    if value not in BACKOFF_STRATEGIES:
        raise JobValidationError(
            f"backoff_strategy must be one of {', '.join(BACKOFF_STRATEGIES)}, got {value!r}"
        )
    strategy: BackoffStrategy = "linear" if value == "linear" else "exponential"
    return strategy


@dataclass(eq=False)
class JobDefinition(Generic[ModelT]):
    """What a job type is and how it runs.

    `concurrency` is the cluster-wide limit of running jobs of this type (`None`: no limit).
    The retry fields are the defaults of every job of this type; `enqueue` may override
    `priority`, `max_retries` and `backoff_strategy` per job.

    Flow control (docs/flow-control.md), cluster-wide like `concurrency`: `rate_limit`
    ("100/m", "5/s", "1000/h") caps the starts of the type in any sliding window of that
    length; `key_concurrency` caps the running jobs of the type that share one
    `concurrency_key` (an enqueue option, accepted only for a type that sets it). `queue` is
    the queue its jobs wait in (`enqueue(queue=)` overrides it per job): only workers that
    serve that queue claim them.
    """

    type: str
    schema: builtins.type[ModelT]
    handle: Handler
    concurrency: int | None
    priority: int = 1
    max_retries: int = 0
    backoff_strategy: BackoffStrategy = "exponential"
    retry_delay: Duration = 10
    max_retry_delay: Duration = "24h"
    timeout: Duration | None = None
    fork_mode: bool = False
    fork_helper_path: str | None = None
    rate_limit: str | None = None
    key_concurrency: int | None = None
    queue: str = "default"

    # Parsed forms of the duration fields, filled in by __post_init__.
    retry_delay_td: timedelta = field(init=False, repr=False)
    max_retry_delay_td: timedelta = field(init=False, repr=False)
    timeout_td: timedelta | None = field(init=False, repr=False)
    is_async: bool = field(init=False, repr=False)
    rate_limit_parsed: RateLimit | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type.strip():
            raise JobValidationError(f"job type must be a non-empty string, got {self.type!r}")
        problem = text_problem(self.type)
        if problem is not None:
            raise JobValidationError(f"job type {problem}: {self.type!r}")
        if not (isinstance(self.schema, type) and issubclass(self.schema, BaseModel)):
            raise TypeError(f"schema of job type {self.type!r} must be a pydantic model class")
        if not callable(self.handle):
            raise TypeError(f"handle of job type {self.type!r} must be callable")
        if self.concurrency is not None and (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise JobValidationError(
                f"concurrency of job type {self.type!r} must be an int >= 1 or None, "
                f"got {self.concurrency!r}"
            )
        self.rate_limit_parsed = (
            None if self.rate_limit is None else RateLimit.parse(self.rate_limit)
        )
        if self.key_concurrency is not None and (
            isinstance(self.key_concurrency, bool)
            or not isinstance(self.key_concurrency, int)
            or not 1 <= self.key_concurrency <= MAX_KEY_CONCURRENCY
        ):
            raise JobValidationError(
                f"key_concurrency of job type {self.type!r} must be an int from 1 to "
                f"{MAX_KEY_CONCURRENCY:,} or None, got {self.key_concurrency!r}"
            )
        check_priority(self.priority)
        check_max_retries(self.max_retries)
        check_flow_name(self.queue, f"queue of job type {self.type!r}")
        check_backoff(self.backoff_strategy)
        # Bounded (100 years): the stores add them to their clock, which must stay in the calendar.
        self.retry_delay_td = parse_job_duration(self.retry_delay)
        self.max_retry_delay_td = parse_job_duration(self.max_retry_delay)
        self.timeout_td = None if self.timeout is None else parse_job_duration(self.timeout)
        if self.timeout_td is not None and self.timeout_td <= timedelta(0):
            raise JobValidationError(f"timeout of job type {self.type!r} must be > 0")
        if self.fork_helper_path is not None and not self.fork_mode:
            raise JobValidationError("fork_helper_path needs fork_mode=True")
        self.is_async = inspect.iscoroutinefunction(self.handle) or inspect.iscoroutinefunction(
            getattr(self.handle, "__call__", None)  # noqa: B004 - async callable objects
        )

    def validate_payload(self, data: object) -> JsonValue:
        """Validate `data` (a dict or a model instance) and return it as stored: JSON-ready,
        defaults filled in. Raises `JobValidationError` naming the type and the fields."""
        return self.stored_payload(data)[0]

    def stored_payload(self, data: object) -> tuple[JsonValue, str]:
        """`validate_payload`, with the payload's JSON text as the stores keep it (written
        once here, so the store does not dump it again)."""
        try:
            if isinstance(data, BaseModel):
                model = self.schema.model_validate(data.model_dump())
            else:
                model = self.schema.model_validate(data)
        except ValidationError as exc:
            raise JobValidationError(
                f"invalid payload for job type {self.type!r}: {_summarize(exc)}",
                errors=exc.errors(include_url=False),
            ) from exc
        payload: JsonValue = model.model_dump(mode="json")
        try:
            text = json_text(payload)
        except ValueError as exc:
            raise JobValidationError(f"invalid payload for job type {self.type!r}: {exc}") from None
        return payload, text

    def load_payload(self, data: JsonValue) -> ModelT:
        """The stored JSON back as the schema's model, for the handler. Raises ValidationError."""
        return self.schema.model_validate(data)


def _summarize(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        location = ".".join(str(item) for item in error["loc"]) or "<payload>"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def schema_from_handler(handler: Callable[..., Any]) -> type[BaseModel]:
    """The pydantic model annotated on the handler's first parameter (`data: Email`)."""
    try:
        hints = typing.get_type_hints(handler)
    except Exception as exc:
        raise TypeError(
            f"cannot resolve the type hints of {handler!r}: {exc}; pass schema= explicitly"
        ) from exc
    params = list(inspect.signature(handler).parameters)
    if not params:
        raise TypeError(f"handler {handler!r} must take (data, ctx)")
    annotation = hints.get(params[0])
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        raise TypeError(
            f"the first parameter of {handler!r} must be annotated with a pydantic model "
            f"(got {annotation!r}); or pass schema= explicitly"
        )
    return annotation


def to_json_result(value: object) -> tuple[JsonValue, bool]:
    """A handler's return value as stored in `Job.result`: (value, stored?). Pydantic models are
    dumped; other values are kept only if JSON can encode them."""
    if value is None:  # what most handlers return: no need to encode it to know JSON can
        return None, True
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json"), True
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None, False
    return value, True
