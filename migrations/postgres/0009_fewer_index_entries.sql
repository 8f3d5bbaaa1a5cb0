-- Fewer index entries per message. An UPDATE of a row whose indexed columns change is never
-- HOT, so each new version enters every index of the table: indexing rows no query asks for
-- cost index writes at every Publish, Confirm, lease and Ack for nothing.
--
-- - Only a PREPARED message waits for a check-back (the claim and the next-due queries ask
--   for `state = 'PREPARED'`).
-- - Only a LEASED delivery has a lease end (the expiry queries ask for `state = 'LEASED'`).
--
-- Building the new indexes reads each table once and holds writes meanwhile (a migration
-- runs in a transaction, where CREATE INDEX CONCURRENTLY cannot); on a large database run the
-- upgrade while traffic is low.
DROP INDEX messages_check_due;
CREATE INDEX messages_check_due ON messages (next_check_at, id) WHERE state = 'PREPARED';

DROP INDEX deliveries_leases;
CREATE INDEX deliveries_leases ON deliveries (lease_expires_at) WHERE state = 'LEASED';
