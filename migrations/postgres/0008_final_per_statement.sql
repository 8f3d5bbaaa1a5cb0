-- Messages become final once per statement, not once per row: an Ack of n deliveries ran the
-- row trigger n times, each locking its message and looking at its deliveries with statements
-- of its own; this trigger does the same for the whole statement with two. The rule is the
-- one of 0005_lanes.sql: a confirmed message is final when none of its deliveries is left
-- unfinished (ACKED or DISCARDED), at the time of the change that finished the last one.
--
-- It locks the messages (in id order, so two statements never deadlock) before it looks, with
-- a fresh snapshot: of two transactions finishing a message's last two deliveries at once,
-- the second then sees the first's change (see courier_mark_final_if_done in 0002).

CREATE FUNCTION courier_final_on_done_rows() RETURNS trigger LANGUAGE plpgsql AS $$
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
    UPDATE messages m SET final_at = f.at
    FROM unnest(finished, finished_at) AS f(id, at)
    WHERE m.id = f.id AND m.state = 'CONFIRMED' AND m.final_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM deliveries d
                      WHERE d.message_id = m.id AND d.state NOT IN ('ACKED', 'DISCARDED'));
    RETURN NULL;
END
$$;

DROP TRIGGER messages_final_on_done ON deliveries;
CREATE TRIGGER messages_final_on_done
AFTER UPDATE ON deliveries
REFERENCING OLD TABLE AS before_rows NEW TABLE AS done_rows
FOR EACH STATEMENT EXECUTE FUNCTION courier_final_on_done_rows();
DROP FUNCTION courier_final_on_ack();
