-- A group commit writes the rows of many sessions with one statement per
-- kind (commit.go). rein_expect_all is its check that each named row was
-- there to update: missing lists the ones that were not, and a non-empty
-- list raises no_data_found with the list as JSON in DETAIL (for the
-- server's error), which rolls the whole commit back.
CREATE FUNCTION rein_expect_all(missing text[], what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(missing) > 0 THEN
        RAISE EXCEPTION '%: % missing', what, array_to_string(missing, ', ')
            USING ERRCODE = 'no_data_found', DETAIL = to_json(missing)::text;
    END IF;
END
$$;
