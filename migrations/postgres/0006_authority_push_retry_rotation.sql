-- Devices imported or enrolled before the authority was recorded: the
-- SRVCRED name is this server's ServerID (PROTOCOL A.5), the authority
-- managing them.
UPDATE devices SET authority = server_name WHERE authority = '';

-- A failed HTTP push is tried again with backoff: state 'retrying' until it
-- is sent or given up ('failed'); when the next try is due, NULL when none.
ALTER TABLE notification_outbox ADD COLUMN next_attempt_at BIGINT;
CREATE INDEX notification_outbox_due ON notification_outbox (state, next_attempt_at);
