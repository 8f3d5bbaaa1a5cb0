-- Counts of what is in flight read only what is in flight.
--
-- The metrics scrape counted messages and deliveries by state over whole tables: about a
-- second per million rows, and retention keeps every ended message for a week by default, so
-- on a busy database each scrape read millions of rows and soon outlasted its timeout. The
-- scrape now counts only PREPARED, UNRESOLVED and unrouted messages and PENDING, LEASED, DEAD
-- and DISCARDED deliveries (`store::sql::LIVE_MESSAGE_COUNTS`, `LIVE_DELIVERY_COUNTS`), each
-- through an index that holds only such rows. PREPARED, PENDING, LEASED and DEAD have one
-- already; these three are for states a message or delivery reaches rarely, so they cost the
-- hot path nothing but a check of their condition.
--
-- Building them reads `messages` and `deliveries` once; on a large database upgrade while
-- traffic is low.
CREATE INDEX messages_unresolved ON messages (topic) WHERE state = 'UNRESOLVED';
CREATE INDEX messages_unrouted ON messages (topic) WHERE state = 'CONFIRMED' AND routed = 0;
CREATE INDEX deliveries_discarded ON deliveries (subscription) WHERE state = 'DISCARDED';
