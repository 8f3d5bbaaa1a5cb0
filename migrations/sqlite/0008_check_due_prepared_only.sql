-- Only a PREPARED message waits for a check-back, and every query of `messages_check_due`
-- asks for PREPARED ones: indexing the others cost an index write at every Publish and two
-- at every Confirm and Cancel for nothing.
DROP INDEX messages_check_due;
CREATE INDEX messages_check_due ON messages (next_check_at) WHERE state = 'PREPARED';
