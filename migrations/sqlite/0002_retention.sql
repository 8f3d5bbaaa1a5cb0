-- Retention: when each message became final, so final messages can be deleted
-- `retention.final_messages` later (freeing their producer keys) by one indexed query.
--
-- A message is final when it is CANCELLED, or CONFIRMED with at least one routed delivery and
-- every remaining delivery ACKED. Triggers keep `final_at` right whatever write causes it
-- (cancel, check-back, resolve, ack, a deleted subscription or dead letter), so no write path
-- can forget it. DEAD deliveries keep their message; unrouted confirms are never final.

ALTER TABLE messages ADD COLUMN final_at INTEGER; -- ms since the epoch; NULL while not final

-- Databases written before this migration.
UPDATE messages SET final_at = COALESCE(decided_at, updated_at) WHERE state = 'CANCELLED';
UPDATE messages
SET final_at = MAX(
    COALESCE(decided_at, updated_at),
    COALESCE((SELECT MAX(d.updated_at) FROM deliveries d WHERE d.message_id = messages.id), 0))
WHERE state = 'CONFIRMED' AND routed > 0
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = messages.id AND d.state <> 'ACKED');

CREATE INDEX messages_final ON messages (final_at) WHERE final_at IS NOT NULL;

CREATE TRIGGER messages_final_on_cancel
AFTER UPDATE OF state ON messages
WHEN NEW.state = 'CANCELLED' AND OLD.state <> 'CANCELLED'
BEGIN
    UPDATE messages SET final_at = NEW.updated_at WHERE id = NEW.id;
END;

CREATE TRIGGER messages_final_on_ack
AFTER UPDATE OF state ON deliveries
WHEN NEW.state = 'ACKED' AND OLD.state <> 'ACKED'
BEGIN
    UPDATE messages SET final_at = NEW.updated_at
    WHERE id = NEW.message_id AND state = 'CONFIRMED' AND final_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.message_id = NEW.message_id AND d.state <> 'ACKED');
END;

-- The last unfinished delivery went away with its subscription (or as a deleted dead letter).
CREATE TRIGGER messages_final_on_delivery_delete
AFTER DELETE ON deliveries
WHEN OLD.state <> 'ACKED'
BEGIN
    UPDATE messages SET final_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE id = OLD.message_id AND state = 'CONFIRMED' AND final_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.message_id = OLD.message_id AND d.state <> 'ACKED');
END;
