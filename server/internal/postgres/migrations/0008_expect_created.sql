-- rein_expect with the createdAt each row was read with (0: not
-- checked): a session deleted and created again with the same id counts
-- its version from 0 again, so a replica whose cache still holds the
-- deleted session could find its cached version on the new row and
-- write the old session's record over it. The two-argument form stays
-- for replicas of the version before, during a rolling upgrade.
CREATE FUNCTION rein_expect(ids text[], versions bigint[], created bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    stale text[];
BEGIN
    PERFORM 1 FROM sessions WHERE id = ANY(ids) ORDER BY id FOR UPDATE;
    SELECT array_agg(x.id ORDER BY x.id) INTO stale
    FROM unnest(ids, versions, created) AS x(id, v, c)
    LEFT JOIN sessions s ON s.id = x.id
    WHERE s.id IS NULL OR s.version <> x.v OR (x.c <> 0 AND s.created_at <> x.c);
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'sessions changed by another server' USING ERRCODE = 'RN001', DETAIL = to_json(stale)::text;
    END IF;
END
$$;
