-- Courier's schema on PostgreSQL: the same tables, columns and units as on SQLite, so both
-- backends behave alike. Times are milliseconds since the Unix epoch (BIGINT); durations are
-- milliseconds; states are their names, so an operator can read the tables directly.
-- Names use the "C" collation so they sort bytewise, as SQLite sorts them; message ids are
-- UUIDv7, and the uuid type sorts as their hyphenated text does.

CREATE TABLE subscriptions (
    name               TEXT COLLATE "C" PRIMARY KEY,
    topic              TEXT COLLATE "C" NOT NULL,
    ack_deadline_ms    BIGINT           NOT NULL,
    max_attempts       BIGINT           NOT NULL,
    initial_backoff_ms BIGINT           NOT NULL,
    max_backoff_ms     BIGINT           NOT NULL,
    multiplier         DOUBLE PRECISION NOT NULL,
    push_endpoint      TEXT,
    created_at         BIGINT           NOT NULL
);
CREATE INDEX subscriptions_by_topic ON subscriptions (topic);

CREATE TABLE messages (
    id               UUID             PRIMARY KEY, -- UUIDv7: sorts by creation time
    producer         TEXT COLLATE "C" NOT NULL,
    topic            TEXT COLLATE "C" NOT NULL,
    key              TEXT COLLATE "C" NOT NULL,
    payload          BYTEA            NOT NULL,
    headers          TEXT             NOT NULL,    -- JSON object, keys sorted
    state            TEXT             NOT NULL,
    deliver_after_ms BIGINT           NOT NULL,
    created_at       BIGINT           NOT NULL,
    updated_at       BIGINT           NOT NULL,
    decided_at       BIGINT,                       -- when it became CONFIRMED or CANCELLED
    routed           BIGINT,                       -- deliveries created at confirm; 0: unrouted
    check_attempts   BIGINT           NOT NULL DEFAULT 0,
    next_check_at    BIGINT,
    last_check_error TEXT,
    UNIQUE (producer, key)
);
CREATE INDEX messages_check_due ON messages (state, next_check_at);
CREATE INDEX messages_by_topic ON messages (topic, id);

-- Deliveries go with their subscription and their message (SQLite deletes them explicitly;
-- here the foreign keys also keep a concurrent delete from leaving orphans behind).
CREATE TABLE deliveries (
    subscription     TEXT COLLATE "C" NOT NULL REFERENCES subscriptions (name) ON DELETE CASCADE,
    message_id       UUID             NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    state            TEXT             NOT NULL,
    attempts         BIGINT           NOT NULL DEFAULT 0,
    generation       BIGINT           NOT NULL DEFAULT 0, -- bumped by every lease; receipts name it
    next_attempt_at  BIGINT,                              -- set while PENDING
    lease_expires_at BIGINT,                              -- set while LEASED
    last_error       TEXT,
    updated_at       BIGINT           NOT NULL,
    PRIMARY KEY (subscription, message_id)
);
CREATE INDEX deliveries_due ON deliveries (subscription, state, next_attempt_at);
CREATE INDEX deliveries_leases ON deliveries (state, lease_expires_at);
CREATE INDEX deliveries_by_message ON deliveries (message_id);

CREATE TABLE checkers (
    producer   TEXT COLLATE "C" PRIMARY KEY,
    endpoint   TEXT             NOT NULL,
    timeout_ms BIGINT           NOT NULL,
    updated_at BIGINT           NOT NULL
);
