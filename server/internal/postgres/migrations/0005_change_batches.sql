-- What each request's commit published on a session's artifact stream
-- (store.ChangeBatch), kept a few minutes so that other replicas relay
-- the same records (text deltas, not whole artifacts) to their followers.
CREATE TABLE change_batches (
    session_id  text   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    from_rev    bigint NOT NULL,
    to_rev      bigint NOT NULL,
    at          bigint NOT NULL,
    body        bytea  NOT NULL,
    PRIMARY KEY (session_id, from_rev)
);
CREATE INDEX change_batches_at ON change_batches (at);
