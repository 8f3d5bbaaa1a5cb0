-- Courier's schema on SQLite. Times are milliseconds since the Unix epoch; durations are
-- milliseconds; states are their names, so an operator can read the tables directly.

CREATE TABLE subscriptions (
    name               TEXT    PRIMARY KEY,
    topic              TEXT    NOT NULL,
    ack_deadline_ms    INTEGER NOT NULL,
    max_attempts       INTEGER NOT NULL,
    initial_backoff_ms INTEGER NOT NULL,
    max_backoff_ms     INTEGER NOT NULL,
    multiplier         REAL    NOT NULL,
    push_endpoint      TEXT,
    created_at         INTEGER NOT NULL
);
CREATE INDEX subscriptions_by_topic ON subscriptions (topic);

CREATE TABLE messages (
    id               TEXT    PRIMARY KEY, -- UUIDv7, hyphenated: sorts by creation time
    producer         TEXT    NOT NULL,
    topic            TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    payload          BLOB    NOT NULL,
    headers          TEXT    NOT NULL,    -- JSON object, keys sorted
    state            TEXT    NOT NULL,
    deliver_after_ms INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    decided_at       INTEGER,             -- when it became CONFIRMED or CANCELLED
    routed           INTEGER,             -- deliveries created at confirm; 0 means unrouted
    check_attempts   INTEGER NOT NULL DEFAULT 0,
    next_check_at    INTEGER,
    last_check_error TEXT,
    UNIQUE (producer, key)
);
CREATE INDEX messages_check_due ON messages (state, next_check_at);
CREATE INDEX messages_by_topic ON messages (topic, id);

CREATE TABLE deliveries (
    subscription     TEXT    NOT NULL,
    message_id       TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    generation       INTEGER NOT NULL DEFAULT 0, -- bumped by every lease; receipts name it
    next_attempt_at  INTEGER,                    -- set while PENDING
    lease_expires_at INTEGER,                    -- set while LEASED
    last_error       TEXT,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (subscription, message_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (subscription, state, next_attempt_at);
CREATE INDEX deliveries_leases ON deliveries (state, lease_expires_at);
CREATE INDEX deliveries_by_message ON deliveries (message_id);

CREATE TABLE checkers (
    producer   TEXT    PRIMARY KEY,
    endpoint   TEXT    NOT NULL,
    timeout_ms INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
