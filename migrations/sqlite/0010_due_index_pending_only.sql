-- The due index holds PENDING deliveries only.
--
-- SQLite changes an index only where an UPDATE changes the entry's columns (or its partial
-- index's condition). `deliveries_due` was (subscription, state, next_attempt_at) over every
-- row, so each lease moved a delivery's entry from PENDING to LEASED and each Ack moved it
-- again to ACKED, where it stayed until retention deleted the delivery: two index writes per
-- delivery that no read needed. A lease reads PENDING rows only (`state = 'PENDING'` in its
-- WHERE, as the lanes' promotion and the next-due query do); dead-letter listings and Redrive
-- read DEAD rows, which get a small index of their own. Counts by state (stats) read the
-- table instead of the index.
--
-- Building the two indexes reads `deliveries` once; on a large database upgrade while traffic
-- is low.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (subscription, next_attempt_at)
WHERE state = 'PENDING';
CREATE INDEX deliveries_dead ON deliveries (subscription, message_id)
WHERE state = 'DEAD';
