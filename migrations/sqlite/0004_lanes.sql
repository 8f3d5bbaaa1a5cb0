-- Ordered delivery: in a subscription created `ordered`, deliveries of messages that share an
-- ordering key form a lane, handed out one at a time in the order the messages were confirmed.
--
-- A lane delivery carries its key and its place in the lane (`lane_seq`, taken at confirm, so
-- the lane's order is the commit order). While an earlier delivery of its lane is in flight
-- (due, leased, or DEAD in a lane whose subscription blocks on a dead head) it waits: PENDING
-- with no `next_attempt_at`, so no claim or due-time query sees it. Whatever ends the head
-- (an ack, a discard, a skipped dead head) makes the next one due.
--
-- DISCARDED: a dead delivery an operator ended for good. Like ACKED it is final for its message.

ALTER TABLE subscriptions ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN dead_head TEXT NOT NULL DEFAULT 'BLOCK'; -- BLOCK or SKIP

ALTER TABLE messages ADD COLUMN ordering_key TEXT NOT NULL DEFAULT ''; -- '' means unordered

ALTER TABLE deliveries ADD COLUMN ordering_key TEXT; -- NULL unless the delivery is in a lane
ALTER TABLE deliveries ADD COLUMN lane_seq INTEGER;

-- The live deliveries of each lane, in lane order; ended ones leave the index.
CREATE INDEX deliveries_lanes ON deliveries (subscription, ordering_key, lane_seq)
WHERE ordering_key IS NOT NULL AND state IN ('PENDING', 'LEASED', 'DEAD');

-- Final now means every remaining delivery is ACKED or DISCARDED.
DROP TRIGGER messages_final_on_ack;
CREATE TRIGGER messages_final_on_done
AFTER UPDATE OF state ON deliveries
WHEN NEW.state IN ('ACKED', 'DISCARDED') AND OLD.state NOT IN ('ACKED', 'DISCARDED')
BEGIN
    UPDATE messages SET final_at = NEW.updated_at
    WHERE id = NEW.message_id AND state = 'CONFIRMED' AND final_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.message_id = NEW.message_id
                        AND d.state NOT IN ('ACKED', 'DISCARDED'));
END;

DROP TRIGGER messages_final_on_delivery_delete;
CREATE TRIGGER messages_final_on_delivery_delete
AFTER DELETE ON deliveries
WHEN OLD.state NOT IN ('ACKED', 'DISCARDED')
BEGIN
    UPDATE messages SET final_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE id = OLD.message_id AND state = 'CONFIRMED' AND final_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.message_id = OLD.message_id
                        AND d.state NOT IN ('ACKED', 'DISCARDED'));
END;
