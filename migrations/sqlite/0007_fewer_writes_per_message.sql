-- Less work per message for the single writer; nothing about durability changes.
--
-- When a message becomes final is now written once, in the store's code
-- (`store::sql::MARK_FINAL_IF_DONE`, run by every write that ends or removes a live delivery;
-- a cancel writes `final_at` with the cancel), not in triggers. The triggers also made SQLite
-- open a statement journal for every confirm and every ack, copying each page those touched.
DROP TRIGGER messages_final_on_cancel;
DROP TRIGGER messages_final_on_done;
DROP TRIGGER messages_final_on_delivery_delete;

-- Only leased deliveries have a lease end: indexing the others (state, NULL) cost an index
-- write at routing and two at each lease and ack for nothing.
DROP INDEX deliveries_leases;
CREATE INDEX deliveries_leases ON deliveries (lease_expires_at) WHERE state = 'LEASED';
