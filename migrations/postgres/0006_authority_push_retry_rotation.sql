-- Devices imported or enrolled before the authority was recorded: the
-- SRVCRED name is this server's ServerID (PROTOCOL A.5), the authority
-- managing them.
UPDATE devices SET authority = server_name WHERE authority = '';

-- A failed HTTP push is tried again with backoff: state 'retrying' until it
-- is sent or given up ('failed'); when the next try is due, NULL when none.
ALTER TABLE notification_outbox ADD COLUMN next_attempt_at BIGINT;
CREATE INDEX notification_outbox_due ON notification_outbox (state, next_attempt_at);

-- New CLCRED and SRVCRED secrets the server sent to an auto-enrolled device
-- (PROTOCOL A.4: the enrolment secret is for first contact only); sealed
-- like the others, they replace the stored ones once the device confirms
-- them; '' when none is pending.
ALTER TABLE devices ADD COLUMN pending_client_secret_enc TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN pending_server_secret_enc TEXT NOT NULL DEFAULT '';
