-- The Idempotency-Key a client sent a command with (NULL for none). A
-- session stores at most one command per key: a retried command finds the
-- first by its key and is answered with its id instead of being stored
-- again (see server/commands.go), on whichever replica it lands. The
-- index serves that lookup too.
ALTER TABLE commands ADD COLUMN idem_key text;
CREATE UNIQUE INDEX commands_idem_key ON commands (session_id, idem_key) WHERE idem_key IS NOT NULL;
