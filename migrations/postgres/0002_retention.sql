-- Retention: when each message became final, so final messages can be deleted
-- `retention.final_messages` later (freeing their producer keys) by one indexed query. The
-- same rules as SQLite's 0002_retention.sql, kept by triggers so no write path can forget them.
--
-- A message is final when it is CANCELLED, or CONFIRMED with at least one routed delivery and
-- every remaining delivery ACKED. DEAD deliveries keep their message; unrouted confirms are
-- never final.

ALTER TABLE messages ADD COLUMN final_at BIGINT; -- ms since the epoch; NULL while not final

-- Databases written before this migration.
UPDATE messages SET final_at = COALESCE(decided_at, updated_at) WHERE state = 'CANCELLED';
UPDATE messages m
SET final_at = GREATEST(
    COALESCE(m.decided_at, m.updated_at),
    COALESCE((SELECT MAX(d.updated_at) FROM deliveries d WHERE d.message_id = m.id), 0))
WHERE m.state = 'CONFIRMED' AND m.routed > 0
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id AND d.state <> 'ACKED');

CREATE INDEX messages_final ON messages (final_at) WHERE final_at IS NOT NULL;

CREATE FUNCTION courier_final_on_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.final_at := NEW.updated_at;
    RETURN NEW;
END
$$;

CREATE TRIGGER messages_final_on_cancel
BEFORE UPDATE OF state ON messages
FOR EACH ROW WHEN (NEW.state = 'CANCELLED' AND OLD.state <> 'CANCELLED')
EXECUTE FUNCTION courier_final_on_cancel();

-- Marks a confirmed message final at `at` once none of its deliveries is left unacked. It
-- locks the message row before it looks: two transactions that finish a message's last two
-- deliveries at once (acks on two subscriptions, on two replicas; an ack and a subscription
-- delete) then run one after the other, and the second, looking with a fresh snapshot, sees
-- the first's change. Without the lock each would see the other's delivery still unacked and
-- the message would never become final.
CREATE FUNCTION courier_mark_final_if_done(message UUID, at BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM messages WHERE id = message FOR UPDATE;
    UPDATE messages SET final_at = at
    WHERE id = message AND state = 'CONFIRMED' AND final_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.message_id = message AND d.state <> 'ACKED');
END
$$;

CREATE FUNCTION courier_final_on_ack() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM courier_mark_final_if_done(NEW.message_id, NEW.updated_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_final_on_ack
AFTER UPDATE OF state ON deliveries
FOR EACH ROW WHEN (NEW.state = 'ACKED' AND OLD.state <> 'ACKED')
EXECUTE FUNCTION courier_final_on_ack();

-- The last unfinished delivery went away with its subscription (or as a deleted dead letter).
CREATE FUNCTION courier_final_on_delivery_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM courier_mark_final_if_done(
        OLD.message_id, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_final_on_delivery_delete
AFTER DELETE ON deliveries
FOR EACH ROW WHEN (OLD.state <> 'ACKED')
EXECUTE FUNCTION courier_final_on_delivery_delete();
