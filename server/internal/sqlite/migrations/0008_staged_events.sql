-- Staged events (store.Stager): every AppendEvents lands here first, at
-- the end of one rowid B-tree whatever the session, so a commit of many
-- sessions' single events dirties a page or two; in events, ordered by
-- session, the same commit dirtied a page per session. The server moves
-- them all into events (store.Unstage) a few times a second, one page per
-- session for everything staged since. No index: the table holds a few
-- thousand rows at most, and a session's rows are read only when its log
-- is read (scanned) or the session is deleted (the cascade scans it).
CREATE TABLE staged_events (
    seq        INTEGER PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    pos        INTEGER NOT NULL,
    instance   TEXT    NOT NULL,
    agent_seq  INTEGER NOT NULL,
    body       TEXT    NOT NULL
);
