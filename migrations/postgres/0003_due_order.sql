-- Receive claims due deliveries ORDER BY next_attempt_at, message_id. With message_id in the
-- index, PostgreSQL reads the first rows in order instead of sorting every due row: a claim
-- stays fast however large the backlog.
CREATE INDEX deliveries_due_ordered ON deliveries (subscription, state, next_attempt_at, message_id);
DROP INDEX deliveries_due;
