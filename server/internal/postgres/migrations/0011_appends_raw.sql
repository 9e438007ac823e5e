-- Appended text holding NUL (U+0000: a tool's output of a binary file,
-- `cat a.out`). PostgreSQL's text type cannot store NUL, so until now the
-- server wrote such an artifact's whole body at every group commit that
-- appended to it (JSON escapes NUL): a stream of tens of MB of binary
-- output in small deltas wrote gigabytes. Such an append now goes in raw,
-- its UTF-8 bytes, with text NULL; every other append stays in text, as
-- before. Exactly one of the two is set (the CHECK; NOT VALID because the
-- rows stored before all have text and no raw, so the table need not be
-- scanned under its lock, and new rows are checked all the same).
--
-- A replica of the version before, running during a rolling upgrade,
-- keeps writing text as it did. One that reads an artifact whose appends
-- a new replica stored in raw fails that read (it scans text, NULL there,
-- into a Go string and gets an error) rather than serving the artifact
-- without them: the read gets 5xx until the replica is replaced. Only
-- artifacts streamed with NUL through a new replica are concerned.
ALTER TABLE artifact_appends ALTER COLUMN text DROP NOT NULL;
ALTER TABLE artifact_appends ADD COLUMN raw bytea;
ALTER TABLE artifact_appends ADD CONSTRAINT artifact_appends_text_or_raw
    CHECK ((text IS NULL) <> (raw IS NULL)) NOT VALID;

-- lz4, as 0010 set for the other big columns, where the server has it.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'ALTER TABLE artifact_appends ALTER COLUMN raw SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;
