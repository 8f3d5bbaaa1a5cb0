-- The timeline of a message beyond what its rows hold: the same table as SQLite's
-- 0005_message_events.sql (see there). Events go with their message (foreign key).

CREATE TABLE message_events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   UUID   NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at           BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    subscription TEXT COLLATE "C",
    attempt      BIGINT,
    outcome      TEXT,
    detail       TEXT
);
CREATE INDEX message_events_by_message ON message_events (message_id, seq);

ALTER TABLE messages ADD COLUMN decided_by TEXT;
