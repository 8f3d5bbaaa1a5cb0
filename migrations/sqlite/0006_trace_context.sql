-- Trace context: the W3C `traceparent` and `tracestate` a producer sent with Prepare or
-- Publish, validated (docs/design-notes.md, "Traces"). Courier sends them on with every check
-- of the message and every delivery. NULL when the producer sent none (or an invalid one).

ALTER TABLE messages ADD COLUMN traceparent TEXT;
ALTER TABLE messages ADD COLUMN tracestate TEXT; -- NULL unless there is a traceparent
