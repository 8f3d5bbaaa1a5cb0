-- Ordered delivery: lanes of deliveries that share an ordering key, and DISCARDED deliveries.
-- The same rules as SQLite's 0004_lanes.sql; see there.

ALTER TABLE subscriptions ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE subscriptions ADD COLUMN dead_head TEXT NOT NULL DEFAULT 'BLOCK';

ALTER TABLE messages ADD COLUMN ordering_key TEXT NOT NULL DEFAULT '';

ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
ALTER TABLE deliveries ADD COLUMN lane_seq BIGINT;

CREATE INDEX deliveries_lanes ON deliveries (subscription, ordering_key, lane_seq)
WHERE ordering_key IS NOT NULL AND state IN ('PENDING', 'LEASED', 'DEAD');

CREATE OR REPLACE FUNCTION courier_mark_final_if_done(message UUID, at BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM messages WHERE id = message FOR UPDATE;
    UPDATE messages SET final_at = at
    WHERE id = message AND state = 'CONFIRMED' AND final_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.message_id = message AND d.state NOT IN ('ACKED', 'DISCARDED'));
END
$$;

DROP TRIGGER messages_final_on_ack ON deliveries;
CREATE TRIGGER messages_final_on_done
AFTER UPDATE OF state ON deliveries
FOR EACH ROW WHEN (NEW.state IN ('ACKED', 'DISCARDED') AND OLD.state NOT IN ('ACKED', 'DISCARDED'))
EXECUTE FUNCTION courier_final_on_ack();

DROP TRIGGER messages_final_on_delivery_delete ON deliveries;
CREATE TRIGGER messages_final_on_delivery_delete
AFTER DELETE ON deliveries
FOR EACH ROW WHEN (OLD.state NOT IN ('ACKED', 'DISCARDED'))
EXECUTE FUNCTION courier_final_on_delivery_delete();
