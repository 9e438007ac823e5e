-- A session's sandbox token, as a SHA-256 hash: the token itself is shown
-- once, in the 201 that created the session (or the rotation's answer), and
-- never stored. A random 256-bit token needs no salt or slow hash: there is
-- nothing to guess from its hash. One row per session; rotating replaces it.
CREATE TABLE sandbox_tokens (
    session_id TEXT    PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    hash       BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
