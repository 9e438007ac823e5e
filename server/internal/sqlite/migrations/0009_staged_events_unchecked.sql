-- staged_events without its foreign key. With the key, every staged row
-- looked its session up in sessions as it was inserted: about a seventh
-- of the cost of a commit of single-event requests. The Store checks
-- instead that a session exists once, when it stages its first row since
-- the last Unstage (the same read finds its highest position), and
-- deleting a session deletes its staged rows. The rows are moved into
-- events, whose key still checks each one.
CREATE TABLE staged_events_unchecked (
    seq        INTEGER PRIMARY KEY,
    session_id TEXT    NOT NULL,
    pos        INTEGER NOT NULL,
    instance   TEXT    NOT NULL,
    agent_seq  INTEGER NOT NULL,
    body       TEXT    NOT NULL
);
INSERT INTO staged_events_unchecked (seq, session_id, pos, instance, agent_seq, body)
    SELECT seq, session_id, pos, instance, agent_seq, body FROM staged_events;
DROP TABLE staged_events;
ALTER TABLE staged_events_unchecked RENAME TO staged_events;
