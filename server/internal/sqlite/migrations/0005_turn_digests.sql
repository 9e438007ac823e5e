-- The digest of the event log when a turn ended (see server/README.md,
-- "Turn digests"), recorded then so that a later change to the stored
-- events no longer matches it. Keyed by the log position of the event that
-- ended the turn: a turn id may in principle repeat, a position cannot.
CREATE TABLE turn_digests (
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    end_pos     INTEGER NOT NULL,
    turn_id     TEXT    NOT NULL,
    digest      BLOB    NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, end_pos)
) WITHOUT ROWID;
