-- The id of the last command the session's sandbox acknowledged (took):
-- the commands after it up to last_command_id are accepted and pending.
ALTER TABLE sessions ADD COLUMN acked_command_id bigint NOT NULL DEFAULT 0;

-- Sessions stored by a build before acknowledgements start with every
-- command acknowledged, as that build took them (see SQLite's
-- 0006_command_acks.sql): otherwise their old prompts would go again to
-- the next sandbox that connects without a cursor.
UPDATE sessions SET acked_command_id = last_command_id;
