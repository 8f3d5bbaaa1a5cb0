-- A message's row is locked to finish it only when another delivery of it could finish at the
-- same moment: when it was routed to more than one subscription.
--
-- The lock exists so that of two transactions finishing a message's last two deliveries at
-- once, the second sees the first's change (0002_retention.sql). A message routed to one
-- subscription has one delivery, ever (routing writes `routed` with the deliveries it creates,
-- and nothing adds deliveries later), and every change to that delivery already holds its row
-- lock: they queue there. Locking the message as well wrote a lock record to the WAL for each
-- message and dirtied its page for nothing; on a backlog, whose message pages are cold since
-- the last checkpoint, each lock also logged the whole 8 KiB page once.
--
-- The rule of when a message is final is unchanged. `routed` is NULL only for messages never
-- confirmed (which cannot be finished by an Ack); those are locked as before.

CREATE OR REPLACE FUNCTION courier_mark_final_if_done(message UUID, at BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM messages WHERE id = message AND routed IS DISTINCT FROM 1 FOR UPDATE;
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
    PERFORM 1 FROM messages WHERE id = ANY (finished) AND routed IS DISTINCT FROM 1
    ORDER BY id FOR NO KEY UPDATE;
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
