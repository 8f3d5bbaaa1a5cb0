-- When a message became final, in a table of its own rather than a column of `messages`
-- (as SQLite's 0009_final_messages.sql).
--
-- `final_at` was indexed (`messages_final`), so writing it at the Ack that finished a message
-- was never a HOT update: it copied the whole row, 1 KiB payload included, into the heap and
-- the WAL again and added an entry to each of the table's indexes. A row here is ~40
-- bytes and two index entries. The rule of when a message is final is unchanged (see
-- 0002_retention.sql and 0008_final_per_statement.sql); the locks that make two transactions
-- finishing one message's last deliveries see each other are the same message row locks.
--
-- Retention deletes a message and its row here in one statement; only retention deletes
-- messages, so no foreign key is needed (and none is checked at every Ack).
--
-- Dropping the column only changes the catalog; copying the final moments reads `messages`
-- once. On a large database upgrade while traffic is low.
CREATE TABLE final_messages (
    message_id UUID   PRIMARY KEY,
    final_at   BIGINT NOT NULL -- ms since the epoch
);
CREATE INDEX final_messages_by_time ON final_messages (final_at, message_id);

INSERT INTO final_messages (message_id, final_at)
SELECT id, final_at FROM messages WHERE final_at IS NOT NULL;

-- A cancelled message is final at once.
CREATE OR REPLACE FUNCTION courier_final_on_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO final_messages (message_id, final_at) VALUES (NEW.id, NEW.updated_at)
    ON CONFLICT (message_id) DO NOTHING;
    RETURN NULL;
END
$$;

DROP TRIGGER messages_final_on_cancel ON messages;
CREATE TRIGGER messages_final_on_cancel
AFTER UPDATE OF state ON messages
FOR EACH ROW WHEN (NEW.state = 'CANCELLED' AND OLD.state <> 'CANCELLED')
EXECUTE FUNCTION courier_final_on_cancel();

CREATE OR REPLACE FUNCTION courier_mark_final_if_done(message UUID, at BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM messages WHERE id = message FOR UPDATE;
    INSERT INTO final_messages (message_id, final_at)
    SELECT m.id, at FROM messages m
    WHERE m.id = message AND m.state = 'CONFIRMED'
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.message_id = message AND d.state NOT IN ('ACKED', 'DISCARDED'))
    ON CONFLICT (message_id) DO NOTHING;
END
$$;

CREATE OR REPLACE FUNCTION courier_final_on_done_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    finished UUID[];
    finished_at BIGINT[];
BEGIN
    SELECT array_agg(f.message_id ORDER BY f.message_id), array_agg(f.at ORDER BY f.message_id)
    INTO finished, finished_at
    FROM (SELECT n.message_id, max(n.updated_at) AS at
          FROM done_rows n JOIN before_rows o
            ON o.subscription = n.subscription AND o.message_id = n.message_id
          WHERE n.state IN ('ACKED', 'DISCARDED') AND o.state NOT IN ('ACKED', 'DISCARDED')
          GROUP BY n.message_id) f;
    IF finished IS NULL THEN
        RETURN NULL; -- leases, expiries, nacks: nothing finished
    END IF;
    PERFORM 1 FROM messages WHERE id = ANY (finished) ORDER BY id FOR NO KEY UPDATE;
    INSERT INTO final_messages (message_id, final_at)
    SELECT m.id, f.at FROM unnest(finished, finished_at) AS f(id, at)
    JOIN messages m ON m.id = f.id
    WHERE m.state = 'CONFIRMED'
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.message_id = m.id AND d.state NOT IN ('ACKED', 'DISCARDED'))
    ON CONFLICT (message_id) DO NOTHING;
    RETURN NULL;
END
$$;

DROP INDEX messages_final;
ALTER TABLE messages DROP COLUMN final_at;
