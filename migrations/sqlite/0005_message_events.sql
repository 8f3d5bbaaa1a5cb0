-- The timeline of a message beyond what its rows hold (issue 14): every check-back answer and
-- every failed delivery attempt, which the next write of `last_check_error` or `last_error`
-- would overwrite, and the operator's actions. The happy path (prepare, confirm, lease, ack)
-- is read from the messages and deliveries rows, so a message that goes well writes no event.
--
-- Bounded: each write keeps the newest 50 events of its message (store/history.rs); retention
-- deletes the events with their message.

CREATE TABLE message_events (
    seq          INTEGER PRIMARY KEY,  -- insertion order
    message_id   TEXT    NOT NULL,
    at           INTEGER NOT NULL,     -- ms since the epoch
    kind         TEXT    NOT NULL,     -- CHECK, NACKED, LEASE_EXPIRED, PUSH_FAILED, REJECTED, RESOLVED, REDRIVEN, DISCARDED
    subscription TEXT,                 -- delivery events
    attempt      INTEGER,              -- the check or delivery attempt
    outcome      TEXT,                 -- CHECK: COMMIT, ROLLBACK, RETRY, GAVE_UP; failures: RETRY, DEAD; RESOLVED: COMMIT, ROLLBACK
    detail       TEXT                  -- error text, reason, or who acted
);
CREATE INDEX message_events_by_message ON message_events (message_id, seq);

-- Who decided a message: NULL for its producer (Confirm, Cancel, Publish), CHECKER, OPERATOR.
ALTER TABLE messages ADD COLUMN decided_by TEXT;
