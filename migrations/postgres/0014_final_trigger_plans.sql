-- The trigger that finishes messages, planned so that its cost follows the rows it is given,
-- not the table sizes it was first planned at.
--
-- PL/pgSQL keeps a statement's plan for the life of the connection. A statement without
-- parameters always runs its first plan; one with parameters runs a generic plan after five
-- calls whenever that plan looks no dearer. Both were made once, on a connection opened
-- while the tables and the batches were small, and kept as both grew:
--
-- - the pairing of each delivery's old and new row (the transition tables, whose sizes the
--   planner takes from the statement it was first planned for) ran as a nested loop, its
--   cost the square of the rows updated; every lease and every Ack of 256 deliveries paid
--   for 65,536 comparisons. It now puts both tables' rows in one list and groups them by
--   delivery, which costs the same whatever the planner believes;
-- - the insert into `final_messages` ran, on a connection opened while `messages` held a few
--   pages, a nested loop over a sequential scan of all of `messages` for every finished
--   message: Acks of 256 took 150–550 ms once the table held 20,000 messages (measured with
--   `auto_explain`, `courier bench --payload-bytes 64 --database-url …`). Its statements, and
--   those of `courier_mark_final_if_done`, are now planned at every call, with the call's
--   values and the tables as they are, as the lease and the Ack are (`postgres/leases.rs`).
--
-- The rule of when a message is final, and the locks taken to apply it, are those of
-- 0011_lock_shared_messages_only.sql.

CREATE OR REPLACE FUNCTION courier_final_on_done_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    finished UUID[];
    finished_at BIGINT[];
BEGIN
    -- A delivery finished by this statement is done (ACKED or DISCARDED) in its new row and
    -- was not in its old one; a message is finished at its latest such delivery.
    SELECT array_agg(f.message_id ORDER BY f.message_id), array_agg(f.at ORDER BY f.message_id)
    INTO finished, finished_at
    FROM (SELECT c.message_id, max(c.at) AS at
          FROM (SELECT r.subscription, r.message_id, max(r.at) AS at
                FROM (SELECT n.subscription, n.message_id, n.updated_at AS at, true AS done_after
                      FROM done_rows n WHERE n.state IN ('ACKED', 'DISCARDED')
                      UNION ALL
                      SELECT o.subscription, o.message_id, NULL, false
                      FROM before_rows o WHERE o.state NOT IN ('ACKED', 'DISCARDED')) r
                GROUP BY r.subscription, r.message_id
                HAVING bool_or(r.done_after) AND bool_or(NOT r.done_after)) c
          GROUP BY c.message_id) f;
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

ALTER FUNCTION courier_final_on_done_rows() SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION courier_mark_final_if_done(UUID, BIGINT) SET plan_cache_mode = force_custom_plan;
