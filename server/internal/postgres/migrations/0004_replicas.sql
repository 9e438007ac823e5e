-- Several replicas on one database (see store.Shared).
--
-- version counts the writes of a session row; a replica's commit expects
-- the version its cache holds (store.Expect) and fails, writing nothing,
-- when another replica wrote the row since. stream_epoch counts command
-- stream openings: a replica holding an older epoch's stream closes it.
ALTER TABLE sessions ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN stream_epoch bigint NOT NULL DEFAULT 0;

-- rein_expect locks the rows of ids in id order (so two replicas'
-- commits never deadlock) and raises SQLSTATE RN001 with the ids whose
-- version is not the expected one (or that are gone) as a JSON array in
-- DETAIL. It runs first in a commit, so the rest of the commit is written
-- only over rows this replica has seen, and they cannot change before the
-- commit ends.
CREATE FUNCTION rein_expect(ids text[], versions bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    stale text[];
BEGIN
    PERFORM 1 FROM sessions WHERE id = ANY(ids) ORDER BY id FOR UPDATE;
    SELECT array_agg(x.id ORDER BY x.id) INTO stale
    FROM unnest(ids, versions) AS x(id, v)
    LEFT JOIN sessions s ON s.id = x.id
    WHERE s.id IS NULL OR s.version <> x.v;
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'sessions changed by another server' USING ERRCODE = 'RN001', DETAIL = to_json(stale)::text;
    END IF;
END
$$;
