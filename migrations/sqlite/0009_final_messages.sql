-- When a message became final, in a table of its own rather than a column of `messages`.
--
-- The single writer rewrites a whole row to change one column, and with it every page that
-- row shares: writing `final_at` into `messages` at each Ack rewrote the 1 KiB payload's pages
-- a second (Publish) or third (Prepare + Confirm) time, and the commit wrote them all to the
-- WAL again. A row here is ~50 bytes, appended in id and time order. The rule of when a
-- message is final is unchanged (see 0002_retention.sql and `store::sqlite::ops`).
--
-- Dropping the column rewrites `messages` once; on a large database upgrade while traffic is
-- low.
CREATE TABLE final_messages (
    message_id TEXT    PRIMARY KEY,
    final_at   INTEGER NOT NULL -- ms since the epoch
) WITHOUT ROWID;
CREATE INDEX final_messages_by_time ON final_messages (final_at);

INSERT INTO final_messages (message_id, final_at)
SELECT id, final_at FROM messages WHERE final_at IS NOT NULL;

DROP INDEX messages_final;
ALTER TABLE messages DROP COLUMN final_at;
