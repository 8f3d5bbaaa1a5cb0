-- A message's payload in a table of its own, written once at Prepare (or Publish).
--
-- SQLite rewrites a row's whole record when an UPDATE changes its size, and a payload over
-- about 4 KiB lives in overflow pages that go with it: every Confirm (its state, decision
-- time, route count and decider change length) wrote the payload a second time, a 64 KiB
-- payload as 34 WAL frames where an UPDATE of a narrow row writes one. The `messages` row is
-- now a few hundred bytes whatever the payload, and names its payload by `payload_id`, the
-- payload row's INTEGER PRIMARY KEY (kept by VACUUM, unlike an undeclared rowid): the lease
-- and every read of a payload find it with one integer lookup, and the payload table needs
-- no index of its own. Retention deletes a payload with its message.
--
-- Copying the payloads and dropping the column rewrites both tables once; on a large
-- database upgrade while traffic is low.
CREATE TABLE message_payloads (
    id      INTEGER PRIMARY KEY,
    payload BLOB    NOT NULL
);

ALTER TABLE messages ADD COLUMN payload_id INTEGER;

INSERT INTO message_payloads (id, payload) SELECT rowid, payload FROM messages;
UPDATE messages SET payload_id = rowid;

ALTER TABLE messages DROP COLUMN payload;
