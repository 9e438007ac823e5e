-- The id of the last command the session's sandbox acknowledged (took):
-- the commands after it up to last_command_id are accepted and pending.
ALTER TABLE sessions ADD COLUMN acked_command_id bigint NOT NULL DEFAULT 0;
