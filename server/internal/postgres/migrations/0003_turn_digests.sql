-- The digest of the event log when a turn ended (see server/README.md,
-- "Turn digests"), recorded then so that a later change to the stored
-- events no longer matches it; the same table as SQLite's
-- (internal/sqlite/migrations/0005_turn_digests.sql). Keyed by the log
-- position of the event that ended the turn: a turn id may in principle
-- repeat, a position cannot.
CREATE TABLE turn_digests (
    session_id  text   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    end_pos     bigint NOT NULL,
    turn_id     text   NOT NULL,
    digest      bytea  NOT NULL,
    recorded_at bigint NOT NULL,
    PRIMARY KEY (session_id, end_pos)
);
