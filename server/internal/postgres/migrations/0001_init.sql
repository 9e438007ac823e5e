-- The same data as the SQLite schema (internal/sqlite/migrations), in one
-- step: there is no older PostgreSQL database to migrate.
--
-- ord breaks created_at ties so listing is oldest first (SQLite's rowid).
CREATE TABLE sessions (
    id               text    PRIMARY KEY,
    ord              bigint  GENERATED ALWAYS AS IDENTITY,
    status           text    NOT NULL,
    summary          text,
    project          text,
    created_at       bigint  NOT NULL,
    last_heartbeat   bigint,
    rev              bigint  NOT NULL DEFAULT 0,
    last_command_id  bigint  NOT NULL DEFAULT 0,
    current_instance text    NOT NULL DEFAULT ''
);
CREATE INDEX sessions_created ON sessions (created_at, ord);
CREATE INDEX sessions_project ON sessions (project, created_at, ord);

-- The append-only event log. body is bytea, not text: it is the sandbox's
-- JSON kept byte for byte, and text would refuse bytes that are not UTF-8
-- where the SQLite backend stores them.
CREATE TABLE events (
    session_id text   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    pos        bigint NOT NULL,
    instance   text   NOT NULL,
    agent_seq  bigint NOT NULL,
    body       bytea  NOT NULL,
    PRIMARY KEY (session_id, pos)
);

-- The reducer's output. The body stays in the row: PostgreSQL keeps a
-- large body out of line (TOAST) and an UPDATE that does not set it keeps
-- the pointer, so moving rev on an append does not copy the body (SQLite
-- needed a separate table for that). appended is the number of bytes
-- pending in artifact_appends: 0 means the body is complete.
CREATE TABLE artifacts (
    session_id text   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    rev        bigint NOT NULL,
    appended   bigint NOT NULL DEFAULT 0,
    body       text   NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX artifacts_rev ON artifacts (session_id, rev);

-- Text appended to streamed fields since the artifact's last full body;
-- reads merge it in (store.MergeAppends). n orders one artifact's appends.
CREATE TABLE artifact_appends (
    session_id text   NOT NULL,
    seq        bigint NOT NULL,
    n          bigint NOT NULL,
    field      text   NOT NULL,
    text       text   NOT NULL,
    PRIMARY KEY (session_id, seq, n),
    FOREIGN KEY (session_id, seq) REFERENCES artifacts (session_id, seq) ON DELETE CASCADE
);

CREATE TABLE commands (
    session_id text   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id         bigint NOT NULL,
    body       text   NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (session_id, id)
);

-- Every agentd instance that held a session's command stream; all but
-- sessions.current_instance are superseded.
CREATE TABLE sandbox_instances (
    session_id text   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    instance   text   NOT NULL,
    first_seen bigint NOT NULL,
    PRIMARY KEY (session_id, instance)
);

-- A session's sandbox token as a SHA-256 hash, never the token.
CREATE TABLE sandbox_tokens (
    session_id text   PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    hash       bytea  NOT NULL UNIQUE,
    created_at bigint NOT NULL
);

-- A commit is sent as one pipelined batch that the server runs as one
-- implicit transaction, so a statement that must touch exactly one row
-- checks it in the server: rein_expect_one raises (SQLSTATE P0002,
-- no_data_found) and the whole commit rolls back.
CREATE FUNCTION rein_expect_one(n bigint, what text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF n <> 1 THEN
        RAISE EXCEPTION '%: % rows', what, n USING ERRCODE = 'no_data_found';
    END IF;
    RETURN n;
END
$$;

-- While commits fail, the server checks now and then whether writes work
-- again (store.WriteChecker): a row written here and deleted at once.
CREATE TABLE write_probe (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);
