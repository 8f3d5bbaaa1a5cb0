-- Counts of what is in flight read only what is in flight.
--
-- The metrics scrape counted messages and deliveries by state over whole tables: about a
-- second per million rows, and retention keeps every ended message for a week by default, so
-- on a busy database each scrape read millions of rows and soon outlasted its timeout. The
-- scrape now counts only PREPARED, UNRESOLVED and unrouted messages and PENDING, LEASED, DEAD
-- and DISCARDED deliveries (`store::sql::LIVE_MESSAGE_COUNTS`, `LIVE_DELIVERY_COUNTS`).
-- PREPARED messages have a partial index already, and each delivery count is a range of
-- `deliveries_due_ordered` (subscription, state, ...). These two are for states a message
-- reaches rarely, so they cost the hot path nothing but a check of their condition.
--
-- Building them reads `messages` once and blocks writes to it meanwhile (migrations run in a
-- transaction, where CREATE INDEX CONCURRENTLY cannot); on a large database run the two
-- statements by hand with CONCURRENTLY first, and the migration then finds them.
CREATE INDEX IF NOT EXISTS messages_unresolved ON messages (topic) WHERE state = 'UNRESOLVED';
CREATE INDEX IF NOT EXISTS messages_unrouted ON messages (topic)
WHERE state = 'CONFIRMED' AND routed = 0;
