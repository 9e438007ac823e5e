-- The id of the last command the session's sandbox acknowledged (took):
-- the commands after it up to last_command_id are accepted and pending.
ALTER TABLE sessions ADD COLUMN acked_command_id INTEGER NOT NULL DEFAULT 0;

-- A session stored by a build before acknowledgements had every command
-- written to the sandbox holding its stream (a command without one was
-- refused), and that build took them as taken. Left at 0, every one of
-- them would count as pending and go again to the next sandbox that
-- connects without a cursor: the agent would run the session's old
-- prompts again. They start acknowledged, as that build saw them.
UPDATE sessions SET acked_command_id = last_command_id;
