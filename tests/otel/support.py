"""Recording the spans of timecrisis in a test: an SDK `TracerProvider` with the in-memory
exporter, handed to the instrumentation for the test's duration.

The global tracer provider can be set only once per process, so in-process tests give the
provider's tracer to `timecrisis._tracing` directly; the two-process test (`test_processes.py`)
goes through the global provider, as an application does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer

from timecrisis import _tracing


@dataclass
class Traced:
    exporter: InMemorySpanExporter
    app: Tracer  # the application's own tracer (request spans, spans inside handlers)

    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.spans()]}"
        return found[0]

    def consumers(self) -> list[ReadableSpan]:
        """The attempt spans, in attempt order."""
        found = [s for s in self.spans() if s.kind is SpanKind.CONSUMER]
        return sorted(found, key=lambda s: int(str((s.attributes or {})["timecrisis.job.attempt"])))


def install(monkeypatch: pytest.MonkeyPatch) -> Traced:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = _tracing._instrumentation()
    assert otel is not None, "opentelemetry-api is installed with the dev extra"
    monkeypatch.setattr(otel, "tracer", provider.get_tracer("timecrisis"))
    return Traced(exporter, provider.get_tracer("tests"))


def attrs(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})
