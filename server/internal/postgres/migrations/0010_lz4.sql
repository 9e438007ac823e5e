-- PostgreSQL compresses a value over about 2 kB as it moves it out of
-- line (TOAST): a tool's output in an event, an artifact's whole body,
-- an appended text, a change batch. It uses pglz unless told otherwise,
-- and pglz is slow, slowest on what barely compresses: a 64 MB tool
-- output of base64 text streamed through agentd took 15.6 and 16.7 s to
-- reach idle with pglz, 11.0 and 12.1 s with lz4, the database the same
-- size. lz4 is PostgreSQL's other method, from version 14 on when it is
-- built with it (as Debian's packages and the official images are);
-- elsewhere the columns keep pglz and this does nothing. Values stored
-- before keep their compression; only new ones use lz4. No table is
-- rewritten.
-- EXECUTE: the statements are parsed only where they run, so an older
-- server, whose parser has no SET COMPRESSION, never sees them.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE events ALTER COLUMN body SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE artifacts ALTER COLUMN body SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE artifact_appends ALTER COLUMN text SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE change_batches ALTER COLUMN body SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    -- Built without lz4 ("compression method lz4 not supported").
    NULL;
END $$;
