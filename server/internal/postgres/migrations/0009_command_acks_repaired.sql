-- 0002 starts a session's acknowledged command at its last one, as the
-- build before acknowledgements took them (see 0002), only since 0bc4493:
-- the builds from b13e3a6 up to it ran 0002 without that UPDATE, so a
-- database one of them migrated holds 0 for every session stored before,
-- and all of those commands count as pending: a sandbox that connects
-- without a cursor would run the session's old prompts, answers and
-- aborts again. The commands stored before 0002 ran (created before its
-- applied_at) start acknowledged now, as 0002 does today (SQLite's
-- 0011_command_acks_repaired.sql does the same).
--
-- Only where the cursor is still 0, as 0002 left it: any other value is
-- a sandbox's word since, which would have replaced the right start too.
-- version moves, so that a replica of the version before, running during
-- a rolling upgrade, does not write its cached row (the cursor at 0) back
-- over this one: its commit expects the old version and is redone on the
-- row read again. On a database 0002 migrated since 0bc4493, or made with
-- it, nothing changes.
WITH before_acks AS (
    SELECT c.session_id, MAX(c.id) AS id
    FROM commands c
    WHERE c.created_at < (SELECT (extract(epoch FROM applied_at) * 1000)::bigint FROM schema_version WHERE version = 2)
    GROUP BY c.session_id
)
UPDATE sessions s SET acked_command_id = b.id, version = s.version + 1
FROM before_acks b
WHERE s.id = b.session_id AND s.acked_command_id = 0;
