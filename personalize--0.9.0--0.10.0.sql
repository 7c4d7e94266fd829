-- personalize 0.9.0 -> 0.10.0: the profile view reads its key namespace's
-- name through _namespace_name() (the backend's list of namespaces) instead
-- of a join of personalize.namespaces, and its trait columns come from a
-- Custom Scan (ProfileColumns) node instead of a Nested Loop over a
-- Function Scan (src/profile_columns_scan.c, no SQL object): a point read
-- through the view was two thirds of a primary-key read of a plain table.
\echo Use "ALTER EXTENSION personalize UPDATE TO '0.10.0'" to load this file. \quit

-- The name of namespace id, NULL if there is none: the profile view's
-- key_namespace column, without a join of personalize.namespaces
-- (src/namespace.c).  The caller needs SELECT on the table, as for the join.
CREATE FUNCTION _namespace_name(id integer) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_namespace_name' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _namespace_name(integer) IS
    'The name of namespace id (NULL if there is none), as a join of personalize.namespaces on id gives it: personalize.profile_view''s key_namespace column.';
REVOKE EXECUTE ON FUNCTION _namespace_name(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _namespace_name(integer) TO personalize_reader;

CREATE OR REPLACE FUNCTION _regenerate_view() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    coldefs text;
    spec text;
    c record;
    dup text;
BEGIN
    SELECT x.column_name INTO dup
      FROM personalize.traits t, personalize._trait_columns(t) x
     GROUP BY x.column_name HAVING count(*) > 1 LIMIT 1;
    IF dup IS NULL THEN
        SELECT x.column_name INTO dup
          FROM personalize.traits t, personalize._trait_columns(t) x
         WHERE x.column_name IN ('profile_id', 'key_namespace', 'key_value', 'first_seen', 'last_seen', 'updated_at', 'audiences');
    END IF;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'two columns of personalize.profile_view would be named %', dup
            USING ERRCODE = 'duplicate_column', HINT = 'Rename one of the traits: windowed traits add _1h, _24h, ... and first/last traits add _at; get_profile() names the profile''s audiences "audiences".';
    END IF;
    -- every trait column comes from one profile_columns() call per row
    SELECT string_agg(format('%I %s', x.column_name, x.column_type), ', ' ORDER BY t.id, x.ord),
           string_agg(x.spec, ';' ORDER BY t.id, x.ord)
      INTO coldefs, spec
      FROM personalize.traits t, personalize._trait_columns(t) WITH ORDINALITY x(column_name, spec, column_type, description, ord);
    IF to_regclass('personalize.profile_view') IS NOT NULL THEN
        DROP VIEW personalize.profile_view;
    END IF;
    EXECUTE format(E'CREATE VIEW personalize.profile_view AS\n'
                   'SELECT p.id AS profile_id, personalize._namespace_name(p.key_namespace_id) AS key_namespace,\n'
                   '       p.key_value, p.first_seen, p.last_seen, p.updated_at%s\n'
                   '  FROM personalize.profiles p%s',
                   CASE WHEN coldefs IS NOT NULL THEN ', c.*' ELSE '' END,
                   CASE WHEN coldefs IS NOT NULL
                        THEN format(E'\n  LEFT JOIN LATERAL personalize.profile_columns(p.states, %L)\n'
                                    '       AS c(%s) ON true', spec, coldefs)
                        ELSE '' END);
    COMMENT ON VIEW personalize.profile_view IS
        'One row per profile, one typed column per trait (windowed traits: one per window, evaluated against now()).  Regenerated when traits change.';
    COMMENT ON COLUMN personalize.profile_view.profile_id IS 'The profile id (see personalize.resolve())';
    COMMENT ON COLUMN personalize.profile_view.key_namespace IS 'Namespace of the profile''s key identifier, its best';
    COMMENT ON COLUMN personalize.profile_view.key_value IS 'The profile''s key identifier';
    COMMENT ON COLUMN personalize.profile_view.first_seen IS 'Event time of the profile''s first event';
    COMMENT ON COLUMN personalize.profile_view.last_seen IS 'Event time of the profile''s last event';
    COMMENT ON COLUMN personalize.profile_view.updated_at IS 'When the profile was last written';
    FOR c IN SELECT x.* FROM personalize.traits t, personalize._trait_columns(t) x LOOP
        EXECUTE format('COMMENT ON COLUMN personalize.profile_view.%I IS %L', c.column_name, c.description);
    END LOOP;
    REVOKE ALL ON personalize.profile_view FROM PUBLIC;
    GRANT SELECT ON personalize.profile_view TO personalize_reader;
    -- a trait an audience reads cannot go or change its columns' types
    PERFORM personalize._audiences_check_all();
    PERFORM personalize._audiences_changed();
END $$;

-- The view as 0.10.0 writes it, if there is one: created by a function, it
-- is not a member of the extension (a trait change drops it), so it leaves
-- the extension again.  A view of the user's that depends on it keeps it as
-- it was, with a notice; any trait change regenerates it later.
DO $$
BEGIN
    IF to_regclass('personalize.profile_view') IS NOT NULL THEN
        BEGIN
            PERFORM personalize._regenerate_view();
            ALTER EXTENSION personalize DROP VIEW personalize.profile_view;
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'personalize.profile_view is kept as it was: other objects depend on it'
                USING HINT = 'It reads its key namespace through a join until the next trait change regenerates it.';
        END;
    END IF;
END $$;
