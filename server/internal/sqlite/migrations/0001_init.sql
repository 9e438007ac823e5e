-- Sessions. rowid breaks created_at ties so listing is oldest first.
CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    status           TEXT    NOT NULL,
    summary          TEXT,
    project          TEXT,
    created_at       INTEGER NOT NULL,
    last_heartbeat   INTEGER,
    rev              INTEGER NOT NULL DEFAULT 0,
    last_command_id  INTEGER NOT NULL DEFAULT 0,
    current_instance TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sessions_project ON sessions (project, created_at);

-- The append-only event log a session's artifacts are folded from.
CREATE TABLE events (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    pos        INTEGER NOT NULL,
    instance   TEXT    NOT NULL,
    agent_seq  INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    PRIMARY KEY (session_id, pos)
) WITHOUT ROWID;

-- The reducer's output, kept so reads and stream replays never fold.
CREATE TABLE artifacts (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    rev        INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE INDEX artifacts_rev ON artifacts (session_id, rev);

CREATE TABLE commands (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id         INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, id)
) WITHOUT ROWID;

-- Every agentd instance that held a session's command stream; all but
-- sessions.current_instance are superseded.
CREATE TABLE sandbox_instances (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    instance   TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (session_id, instance)
) WITHOUT ROWID;
