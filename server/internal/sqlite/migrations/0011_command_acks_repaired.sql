-- 0006 starts a session's acknowledged command at its last one, as the
-- build before acknowledgements took them (see 0006), only since 0bc4493:
-- the builds from b13e3a6 up to it ran 0006 without that UPDATE, so a
-- database one of them migrated holds 0 for every session stored before,
-- and all of those commands count as pending: a sandbox that connects
-- without a cursor would run the session's old prompts, answers and
-- aborts again. The commands stored before 0006 ran (created before its
-- applied_at) start acknowledged now, as 0006 does today.
--
-- Only where the cursor is still 0, as 0006 left it: any other value is
-- a sandbox's word since, which would have replaced the right start too.
-- applied_at is in whole seconds, so a command stored in the second 0006
-- ran in is left pending: sent again at worst, never lost. On a database
-- 0006 migrated since 0bc4493, or made with it, nothing changes.
UPDATE sessions SET acked_command_id = (
    SELECT MAX(c.id) FROM commands c
    WHERE c.session_id = sessions.id
      AND c.created_at < (SELECT applied_at * 1000 FROM schema_version WHERE version = 6)
)
WHERE acked_command_id = 0
  AND EXISTS (
    SELECT 1 FROM commands c
    WHERE c.session_id = sessions.id
      AND c.created_at < (SELECT applied_at * 1000 FROM schema_version WHERE version = 6)
  );
