-- timecrisis SQLite schema, version 5: the trace context of an enqueue travels with its job.
--
-- `headers` is a JSON object of strings written by OpenTelemetry's propagators when the
-- enqueuing process traces (W3C `traceparent`, `tracestate`, `baggage`; docs/otel.md), so the
-- worker's attempt spans join the enqueuer's trace. NULL when it does not trace, for jobs fired
-- by a schedule, and for every job written before this version. Nothing queries inside it.

ALTER TABLE jobs ADD COLUMN headers TEXT;
