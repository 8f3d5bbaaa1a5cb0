-- A message's payload in a table of its own, written once at Prepare (or Publish).
--
-- SQLite rewrites a row's whole record when an UPDATE changes its size, and a payload over
-- about 4 KiB lives in overflow pages that go with it: every Confirm (its state, decision
-- time, route count and decider change length) wrote the payload a second time, a 64 KiB
-- payload as 34 WAL frames where an UPDATE of a narrow row writes one. The `messages` row is
-- now a few hundred bytes whatever the payload; the lease, the idempotency check of Prepare
-- and the reads that show a payload's size or head read it here. Retention deletes it with
-- its message.
--
-- Copying the payloads and dropping the column rewrites both tables once; on a large
-- database upgrade while traffic is low.
CREATE TABLE message_payloads (
    message_id TEXT PRIMARY KEY,
    payload    BLOB NOT NULL
);

INSERT INTO message_payloads (message_id, payload) SELECT id, payload FROM messages;

ALTER TABLE messages DROP COLUMN payload;
