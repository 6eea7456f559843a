-- dm_sessions holds the DM sessions in progress only: a session's row is
-- deleted when it ends (its record is in session_history). An ended row
-- never served a message again, and kept one row per session forever.
DELETE FROM dm_sessions WHERE ended <> 0;
DROP INDEX dm_sessions_updated;
ALTER TABLE dm_sessions DROP COLUMN ended;
CREATE INDEX dm_sessions_updated ON dm_sessions (updated_at);
