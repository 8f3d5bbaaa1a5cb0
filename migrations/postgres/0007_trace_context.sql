-- Trace context: the producer's W3C `traceparent` and `tracestate`. The same columns as
-- SQLite's 0006_trace_context.sql; see there. Nullable without a default: no table rewrite.

ALTER TABLE messages ADD COLUMN traceparent TEXT;
ALTER TABLE messages ADD COLUMN tracestate TEXT;
