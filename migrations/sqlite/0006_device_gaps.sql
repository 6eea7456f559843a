-- Devices imported or enrolled before the authority was recorded: the
-- SRVCRED name is this server's ServerID (PROTOCOL A.5), the authority
-- managing them.
UPDATE devices SET authority = server_name WHERE authority = '';
