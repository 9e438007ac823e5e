-- Streamed fields (assistant text, tool input and output) grow by appends.
-- Rewriting an artifact's whole body on every commit made a long stream
-- quadratic, so a commit that only appended to an artifact stores the
-- appended text in artifact_appends and leaves the body as the last full
-- write; reads merge the rows in (store.MergeAppends). The next full write
-- of the artifact deletes its rows.
--
-- The body moves to its own table: SQLite rewrites a whole record on any
-- UPDATE, so moving an artifact's rev on each append would copy the body
-- again if it stayed in the artifacts row.
CREATE TABLE artifact_bodies (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    PRIMARY KEY (session_id, seq),
    FOREIGN KEY (session_id, seq) REFERENCES artifacts (session_id, seq) ON DELETE CASCADE
);
INSERT INTO artifact_bodies (session_id, seq, body) SELECT session_id, seq, body FROM artifacts;
ALTER TABLE artifacts DROP COLUMN body;

-- appended is the number of bytes pending in artifact_appends: 0 means the
-- body is complete, so reads of other artifacts never look there.
ALTER TABLE artifacts ADD COLUMN appended INTEGER NOT NULL DEFAULT 0;

-- Rowid tables (these and artifact_bodies): their rows hold large text,
-- which WITHOUT ROWID tables store poorly. n orders one artifact's appends.
CREATE TABLE artifact_appends (
    session_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    field      TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    PRIMARY KEY (session_id, seq, n),
    FOREIGN KEY (session_id, seq) REFERENCES artifacts (session_id, seq) ON DELETE CASCADE
);
