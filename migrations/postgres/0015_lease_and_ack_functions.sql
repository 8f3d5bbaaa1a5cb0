-- The lease and the Ack as functions whose plans are made once per connection and are safe
-- whatever the statistics say.
--
-- Sent as a statement of its own, the lease was planned at every call (0.2–0.4 ms, a sixth of
-- its cost and of the Ack's), because a plan cached by PostgreSQL keeps the statistics it was
-- made from: one cached while `deliveries` was empty (just vacuumed) drove its joins from full
-- scans once rows arrived, and a lease ran 73 s. Here the statement is shaped so that every
-- plan PostgreSQL can choose under this function's settings finds rows by key, whatever the
-- table sizes it believes:
--
-- - the due rows come from `deliveries_due`, the one index that gives their order (sorting
--   is off, so no plan scans another index and sorts);
-- - each message is looked up by (topic, id) in a LATERAL subquery with LIMIT 1, which the
--   planner cannot turn into a join driven from `messages`; both indexes that hold `id`,
--   `messages_pkey` (id) and `messages_by_topic` (topic, id), then find it exactly;
-- - the UPDATE finds the claimed rows by their `ctid` (a TID scan; sequential scans are off).
--   A row that changed between the statement's snapshot and its lock (another transaction
--   committed a new version, which FOR UPDATE then locks) is invisible to the UPDATE and is
--   not leased; it stays PENDING for the next lease, which is why the function answers the
--   rows it updated as well as the rows it claimed, and the caller hands out only the rows in
--   both (`leases::lease`).
--
-- The byte budget counts the messages in due order, as before; the caller sorts what it hands
-- out. The settings that leave the planner no other plan are at the end of this file.
CREATE FUNCTION courier_lease(
    subscription_name  TEXT,
    subscription_topic TEXT,
    now_ms             BIGINT,
    max_count          BIGINT,
    expires_at         BIGINT,
    announce           BOOLEAN,
    channel            TEXT,
    allowance          BIGINT,
    max_bytes          BIGINT)
RETURNS TABLE (
    leased       BOOLEAN,
    message_id   UUID,
    attempts     BIGINT,
    generation   BIGINT,
    due_at       BIGINT,
    producer     TEXT,
    topic        TEXT,
    key          TEXT,
    ordering_key TEXT,
    payload      BYTEA,
    headers      TEXT,
    decided_at   BIGINT,
    traceparent  TEXT,
    tracestate   TEXT)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    answered BIGINT;
BEGIN
    RETURN QUERY
    WITH due AS MATERIALIZED (
        SELECT d.ctid AS row_id, d.message_id, d.next_attempt_at, d.attempts, d.generation
        FROM deliveries d
        WHERE d.subscription = subscription_name AND d.state = 'PENDING'
          AND d.next_attempt_at <= now_ms
        ORDER BY d.next_attempt_at, d.message_id
        LIMIT max_count
        FOR UPDATE SKIP LOCKED),
    sized AS MATERIALIZED (
        SELECT due.row_id, due.next_attempt_at, due.attempts, due.generation, m.*,
            sum(m.size + allowance) OVER (ORDER BY due.next_attempt_at, due.message_id
                ROWS UNBOUNDED PRECEDING) AS running,
            row_number() OVER (ORDER BY due.next_attempt_at, due.message_id) AS n
        FROM due CROSS JOIN LATERAL (
            SELECT m.id, m.producer, m.topic, m.key, m.ordering_key, m.payload, m.headers,
                m.decided_at, m.traceparent, m.tracestate,
                octet_length(m.payload) + octet_length(m.headers) + octet_length(m.key)
                    + octet_length(m.ordering_key) AS size
            FROM messages m
            WHERE m.id = due.message_id AND m.topic = subscription_topic
            LIMIT 1) m),
    taken AS MATERIALIZED (
        SELECT * FROM sized WHERE n = 1 OR running <= max_bytes),
    updated AS (
        UPDATE deliveries d SET state = 'LEASED', attempts = d.attempts + 1,
            generation = d.generation + 1, lease_expires_at = expires_at,
            next_attempt_at = NULL, updated_at = now_ms
        WHERE d.ctid = ANY (ARRAY(SELECT row_id FROM taken))
        RETURNING d.message_id)
    SELECT true, u.message_id, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::TEXT,
        NULL::TEXT, NULL::TEXT, NULL::TEXT, NULL::BYTEA, NULL::TEXT, NULL::BIGINT, NULL::TEXT,
        NULL::TEXT
    FROM updated u
    UNION ALL
    SELECT false, t.id, t.attempts + 1, t.generation + 1, t.next_attempt_at, t.producer::TEXT,
        t.topic::TEXT, t.key::TEXT, t.ordering_key, t.payload, t.headers, t.decided_at,
        t.traceparent, t.tracestate
    FROM taken t;
    GET DIAGNOSTICS answered = ROW_COUNT;
    -- Other replicas' lease-expiry loops hear that this one made leases (the caller asks
    -- for it once a window).
    IF announce AND answered > 0 THEN
        PERFORM pg_notify(channel, '');
    END IF;
END
$$;

-- The Ack (its batch and its transactional path alike) the same way: the named deliveries are
-- locked in key order, each through a LATERAL lookup by primary key; those the receipts still
-- hold are marked ACKED by `ctid`; the rows come back as they were found, for the caller to
-- judge each receipt (`leases::Held`). A row locked in a newer version than the statement's
-- snapshot (another transaction changed it meanwhile) is invisible to the UPDATE: the
-- function then raises a serialization failure, which rolls the statement back, and the call
-- runs again on a fresh snapshot (`calls::Calls`), as it would after a deadlock.
CREATE FUNCTION courier_ack(
    subscriptions TEXT[],
    message_ids   UUID[],
    generations   BIGINT[],
    now_ms        BIGINT,
    in_lanes      BOOLEAN)
RETURNS TABLE (
    subscription TEXT,
    message_id   UUID,
    state        TEXT,
    generation   BIGINT,
    attempts     BIGINT,
    ordering_key TEXT)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    found_subscriptions TEXT[];
    found_ids           UUID[];
    found_states        TEXT[];
    found_generations   BIGINT[];
    found_attempts      BIGINT[];
    found_lane_keys     TEXT[];
    doomed_count        BIGINT;
    acked_count         BIGINT;
BEGIN
    WITH receipts AS (
        SELECT r.subscription, r.message_id, array_agg(r.generation) AS generations
        FROM unnest(subscriptions, message_ids, generations)
            AS r(subscription, message_id, generation)
        GROUP BY r.subscription, r.message_id
        ORDER BY r.subscription COLLATE "C", r.message_id),
    held AS MATERIALIZED (
        SELECT h.*, r.generations AS receipt_generations
        FROM receipts r CROSS JOIN LATERAL (
            SELECT d.ctid AS row_id, d.subscription, d.message_id, d.state, d.generation,
                d.attempts, d.ordering_key
            FROM deliveries d
            WHERE d.subscription = r.subscription AND d.message_id = r.message_id
            FOR UPDATE) h),
    doomed AS MATERIALIZED (
        SELECT h.row_id FROM held h
        WHERE h.state IN ('PENDING', 'LEASED', 'DEAD')
          AND (in_lanes OR h.ordering_key IS NULL)
          AND h.generation = ANY (h.receipt_generations)),
    acked AS (
        UPDATE deliveries d SET state = 'ACKED', lease_expires_at = NULL,
            next_attempt_at = NULL, updated_at = now_ms
        WHERE d.ctid = ANY (ARRAY(SELECT row_id FROM doomed))
        RETURNING 1)
    SELECT array_agg(h.subscription), array_agg(h.message_id), array_agg(h.state),
        array_agg(h.generation), array_agg(h.attempts), array_agg(h.ordering_key),
        (SELECT count(*) FROM doomed), (SELECT count(*) FROM acked)
    INTO found_subscriptions, found_ids, found_states, found_generations, found_attempts,
        found_lane_keys, doomed_count, acked_count
    FROM held h;
    IF doomed_count <> acked_count THEN
        RAISE EXCEPTION 'a delivery changed while the Ack was waiting for it'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN QUERY
    SELECT * FROM unnest(found_subscriptions, found_ids, found_states, found_generations,
        found_attempts, found_lane_keys);
END
$$;

-- The settings both functions run with, and their statements are planned under: the generic
-- plan always (made at a connection's first call, again only when a table's definition or
-- statistics change), and no sequential or bitmap scans and no sorts, so that the planner has
-- no plan left but the ones above (their joins are all LATERAL lookups, which no join method
-- can turn around). JIT is off: the sorts that remain (the lease's byte budget, the Ack's key
-- order) are costed as disabled, and that cost alone would have every call compiled (half a
-- second).
DO $$
DECLARE
    planned_once REGPROCEDURE;
BEGIN
    FOREACH planned_once IN ARRAY ARRAY[
        'courier_lease(text, text, bigint, bigint, bigint, boolean, text, bigint, bigint)',
        'courier_ack(text[], uuid[], bigint[], bigint, boolean)']::REGPROCEDURE[]
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET plan_cache_mode = force_generic_plan '
            'SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off '
            'SET jit = off', planned_once);
    END LOOP;
END
$$;

-- The trigger that finishes messages runs inside those functions' UPDATEs. It plans its
-- statements at every call (0014), a setting of its own that outlasts the functions' forced
-- generic plan; the scans and sorts they turn off stay off for it, which leaves its lookups by
-- key as they were.
