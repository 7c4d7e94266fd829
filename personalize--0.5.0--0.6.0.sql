-- personalize 0.5.0 -> 0.6.0: trust boundaries (docs/security.md).
--
-- No role gains a right through the extension:
-- * a namespace and a source record the role that configured them (owner);
--   a normalizer runs as its namespace's owner inside a security-restricted
--   operation, in every path (the worker, resolve(), rebuild()), and never
--   as the worker's bootstrap superuser;
-- * the configuration tables are written only by superusers and by the
--   configuration functions: those written in PL/pgSQL run as SECURITY
--   DEFINER implementations (_register_source, ...) behind a C entry
--   (pz_configure) that records the calling role;
-- * a source is read, by the stream and by rebuild(), only while its owner
--   may read every column taken from it and sees every row;
-- * no user's cast runs: a column whose cast to text is a user's function
--   is read through its type's output function, in both paths;
-- * unlogged tables (not in the WAL) cannot be sources; a table's
--   inheritance children are read by neither path.
\echo Use "ALTER EXTENSION personalize UPDATE TO '0.6.0'" to load this file. \quit

-- ===========================================================================
-- Who configured what
-- ===========================================================================

-- Existing namespaces: the extension's own normalizers (and none) are the
-- extension owner's; another normalizer is its function's owner's, the
-- role that could have named it.
ALTER TABLE namespaces ADD COLUMN owner regrole;
UPDATE namespaces n
   SET owner = coalesce(CASE WHEN n.normalizer IS NOT NULL
                              AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                               WHERE d.classid = 'pg_proc'::regclass AND d.objid = n.normalizer
                                                 AND d.deptype = 'e'
                                                 AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'personalize'))
                             THEN (SELECT p.proowner FROM pg_proc p WHERE p.oid = n.normalizer) END,
                        (SELECT e.extowner FROM pg_extension e WHERE e.extname = 'personalize'))::regrole;
ALTER TABLE namespaces ALTER COLUMN owner SET NOT NULL;
COMMENT ON COLUMN namespaces.owner IS
    'The role that created the namespace: its normalizer runs with this role''s rights, never more.';

-- Existing sources: the table's owner, who may read it.
ALTER TABLE sources ADD COLUMN owner regrole;
UPDATE sources s SET owner = (SELECT c.relowner FROM pg_class c WHERE c.oid = s.relation)::regrole;
ALTER TABLE sources ALTER COLUMN owner SET NOT NULL;
COMMENT ON COLUMN sources.owner IS
    'The role that registered the source: the stream and rebuild() read it only while this role may read every mapped column and sees every row.';

ALTER TABLE stream_sources ADD COLUMN owner oid;

-- ===========================================================================
-- Helpers
-- ===========================================================================

CREATE FUNCTION _configuring_role() RETURNS regrole
    AS 'MODULE_PATHNAME', 'pz_configuring_role' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION _configuring_role() IS
    'The role that called the configuration function under way (register_source, add_trait, ...), else the current user: the owner recorded for what it configures.';

CREATE FUNCTION _source_read_problem(relation regclass, role regrole, columns name[]) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_source_read_problem_sql' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _source_read_problem(regclass, regrole, name[]) IS
    'Why role may not read these columns of relation as a source (no SELECT on one, or row-level security applies to it), or NULL.  The same check as the stream''s.';

CREATE FUNCTION _column_text_sql(relation regclass, column_name name) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_column_text_sql' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _column_text_sql(regclass, name) IS
    'The SQL expression that reads a column of the row e as text the way the stream does: ::text, or the type''s output function where the cast to text is a user''s function.';

-- The columns of a source the stream reads (every_mapped: and every column
-- the source maps, for the registration's check).
CREATE FUNCTION _source_columns(source_id integer, every_mapped boolean) RETURNS name[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
RETURN (SELECT coalesce(array_agg(DISTINCT c.col) FILTER (WHERE c.col IS NOT NULL), '{}')
          FROM (SELECT s.event_time_column AS col FROM personalize.sources s WHERE s.id = source_id
                UNION ALL
                SELECT s.event_type_column FROM personalize.sources s WHERE s.id = source_id
                UNION ALL
                SELECT si.column_name FROM personalize.source_identifiers si WHERE si.source_id = _source_columns.source_id
                UNION ALL
                SELECT sf.column_name FROM personalize.source_fields sf
                 WHERE every_mapped AND sf.source_id = _source_columns.source_id
                UNION ALL
                SELECT f.column_name
                  FROM personalize.traits t
                 CROSS JOIN LATERAL personalize._trait_sources(t.id) ts
                 CROSS JOIN LATERAL (SELECT v.column_name FROM personalize._field_ref(ts.source_id, t.field) v WHERE t.field IS NOT NULL
                                     UNION ALL
                                     SELECT i.column_name FROM personalize._field_ref(ts.source_id, t.item_field) i WHERE t.item_field IS NOT NULL) f
                 WHERE ts.source_id = _source_columns.source_id) c);

-- ERROR unless role may read every column a trait takes from its sources.
CREATE FUNCTION _check_trait_access(trait_id integer, role regrole) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tr personalize.traits;
    s record;
    problem text;
BEGIN
    SELECT * INTO tr FROM personalize.traits t WHERE t.id = trait_id;
    FOR s IN SELECT src.relation,
                    ARRAY(SELECT v.column_name FROM personalize._field_ref(ts.source_id, tr.field) v WHERE tr.field IS NOT NULL
                          UNION ALL
                          SELECT i.column_name FROM personalize._field_ref(ts.source_id, tr.item_field) i WHERE tr.item_field IS NOT NULL) AS cols
               FROM personalize._trait_sources(trait_id) ts JOIN personalize.sources src ON src.id = ts.source_id LOOP
        problem := personalize._source_read_problem(s.relation, role, s.cols);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'trait %: %', tr.name, problem
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('A trait reads its sources with the rights of the role that defines it: GRANT SELECT ON %s TO %s, or restrict the trait with sources => ...', s.relation, role);
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION _namespace_problem(namespace text) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_namespace_problem_sql' LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION _namespace_problem(text) IS
    'Why a namespace cannot normalize values (its normalizer dropped, of the wrong signature, or not executable by the namespace''s owner), or NULL.';

-- One rebuild at a time, on a lock of the extension's own: an advisory
-- lock, which any role can take and hold, would let anyone stall rebuilds
-- and the worker's first one.
CREATE FUNCTION _rebuild_lock() RETURNS void
    AS 'MODULE_PATHNAME', 'pz_rebuild_lock' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION _rebuild_lock() IS
    'Take the rebuild lock until the transaction ends (rebuilds each write every profile).';
REVOKE EXECUTE ON FUNCTION _rebuild_lock() FROM PUBLIC;

CREATE FUNCTION _refuse_in_restricted(action text) RETURNS void
    AS 'MODULE_PATHNAME', 'pz_refuse_in_restricted' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _refuse_in_restricted(text) IS
    'ERROR inside a security-restricted operation (a normalizer run for its owner): configuration and rebuilds are not for such code.';

CREATE FUNCTION _note_unstreamed() RETURNS void
    AS 'MODULE_PATHNAME', 'pz_note_unstreamed' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION _note_unstreamed() IS
    'A NOTICE, once per session, when no worker streams this database (register_source and add_trait call it).';

-- ERROR when a trait's field is in none of the sources it may read: a
-- misspelt field would otherwise build nothing, silently.  With no source
-- registered yet, a NOTICE.
CREATE FUNCTION _check_trait_field(trait_id integer) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tr personalize.traits;
    known text;
BEGIN
    SELECT * INTO tr FROM personalize.traits t WHERE t.id = trait_id;
    IF tr.field IS NULL OR EXISTS (SELECT 1 FROM personalize._trait_sources(trait_id)) THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM personalize.sources) THEN
        RAISE NOTICE 'trait %: no source is registered yet; it will read field % of the sources that have it', tr.name, quote_literal(tr.field);
        RETURN;
    END IF;
    SELECT string_agg(DISTINCT f, ', ' ORDER BY f) INTO known
      FROM (SELECT sf.field AS f FROM personalize.source_fields sf JOIN personalize.sources s ON s.id = sf.source_id
             WHERE tr.sources IS NULL OR s.relation = ANY (tr.sources)
            UNION
            SELECT a.attname::text FROM personalize.sources s JOIN pg_attribute a ON a.attrelid = s.relation
             WHERE (tr.sources IS NULL OR s.relation = ANY (tr.sources)) AND a.attnum > 0 AND NOT a.attisdropped) x;
    RAISE EXCEPTION 'trait %: no source has field %', tr.name, quote_literal(tr.field)
        USING ERRCODE = 'undefined_column',
              HINT = format('The fields and columns of its sources: %s.  Name the field in a source''s fields (register_source(..., fields => ...)), or use a column''s name.', known);
END $$;

-- A field's text as a number, read by the stream's C code (src/field.c): the
-- rebuild and the stream agree on which texts are numbers.
CREATE FUNCTION _field_number(value text) RETURNS numeric
    AS 'MODULE_PATHNAME', 'pz_field_number_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _field_number(text) IS
    'A field''s text as numeric, as the stream reads it (blanks, sign, digits with one point, an exponent within +-1000), or NULL if it is not a number.';
CREATE FUNCTION _field_float8(value text) RETURNS double precision
    AS 'MODULE_PATHNAME', 'pz_field_float8_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _field_float8(text) IS
    'A field''s text as float8, as the stream reads it for windowed sums, or NULL if it is not a number float8 can hold.';

CREATE FUNCTION _normalize_checked(namespace text, value text, OUT normalized text, OUT problem text)
    AS 'MODULE_PATHNAME', 'pz_normalize_checked' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION _normalize_checked(text, text) IS
    'normalize_identifier(), or, if the namespace''s normalizer raises an error on the value, NULL and the error (a user''s normalizer runs in a subtransaction for it).  rebuild() makes the keys of such values dead letters, as the stream does.';

-- Which trait of which source makes a rebuild's scan fail: each trait's
-- part, of the sources the rebuild read (checked), source by source, until
-- one fails (only after a failure, so its
-- cost does not matter).  NULL if none fails on its own.
CREATE FUNCTION _rebuild_culprit(trait_ids integer[], source_ids integer[]) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s record;
    t record;
    f record;
BEGIN
    FOR s IN SELECT src.* FROM personalize.sources src
              WHERE src.id = ANY (source_ids) ORDER BY src.id LOOP
        FOR t IN SELECT tr.* FROM personalize.traits tr
                  WHERE (trait_ids IS NULL OR tr.id = ANY (trait_ids))
                    AND EXISTS (SELECT 1 FROM personalize._trait_sources(tr.id) ts WHERE ts.source_id = s.id)
                  ORDER BY tr.id LOOP
            BEGIN
                -- count(x.states): the states must be computed, not planned away
                EXECUTE 'SELECT count(x.states) FROM (' || personalize._source_part_sql(s.id, ARRAY[t.id]) || ') x';
            EXCEPTION WHEN OTHERS THEN
                SELECT * INTO f FROM personalize._field_ref(s.id, t.field);
                RETURN format('trait %s (%s%s) of source %s', t.name, t.kind,
                              CASE WHEN f.column_name IS NOT NULL
                                   THEN format(', field %s: column %s%s', t.field, quote_ident(f.column_name),
                                               CASE WHEN f.json_key IS NOT NULL THEN format(' key %L', f.json_key) ELSE '' END)
                                   ELSE '' END,
                              s.relation);
            END;
        END LOOP;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION _rebuild_culprit(integer[], integer[]) IS
    'After a rebuild''s scan failed: the first trait and source whose scan fails on its own, as text, or NULL.';

-- Why a source cannot be read as registered any more (its table turned into
-- a view, its event time column of another type now, a json key read from a
-- column that is no json any more), or NULL.  rebuild() runs as the
-- extension's owner: reading a column of another type through a cast
-- would call the cast's function, which the table's owner may have written.
CREATE FUNCTION _source_shape_problem(source_id integer) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s personalize.sources;
    kind "char";
    t oid;
    f record;
BEGIN
    SELECT * INTO s FROM personalize.sources x WHERE x.id = source_id;
    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = s.relation;
    IF kind IS NULL OR kind NOT IN ('r', 'p') THEN
        RETURN format('%s is no table any more', s.relation);
    END IF;
    SELECT a.atttypid INTO t FROM pg_attribute a
     WHERE a.attrelid = s.relation AND a.attname = s.event_time_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF t IS NULL OR t NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RETURN format('event time column %s of %s is missing or of type %s now',
                      quote_ident(s.event_time_column), s.relation, coalesce(t::regtype::text, 'none'));
    END IF;
    FOR f IN SELECT sf.column_name, a.atttypid FROM personalize.source_fields sf
               LEFT JOIN pg_attribute a ON a.attrelid = s.relation AND a.attname = sf.column_name AND NOT a.attisdropped
              WHERE sf.source_id = s.id AND sf.json_key IS NOT NULL LOOP
        IF f.atttypid IS NULL OR f.atttypid NOT IN ('json'::regtype, 'jsonb'::regtype) THEN
            RETURN format('column %s of %s, whose keys are fields, is missing or of type %s now',
                          quote_ident(f.column_name), s.relation, coalesce(f.atttypid::regtype::text, 'none'));
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION _json_depth_ok(value json) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_json_depth_ok_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _json_depth_ok(json) IS
    'Whether a json value nests at most 1000 levels deep (counted without parsing): deeper ones are no events, in the stream as in rebuild().';

-- A table whose inserts the stream sees as they are, or an ERROR that says
-- why it cannot be a source.
CREATE FUNCTION _check_source_kind(relation regclass) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c pg_class;
BEGIN
    SELECT * INTO c FROM pg_class WHERE oid = relation;
    IF c.relpersistence = 't' THEN
        RAISE EXCEPTION 'register_source: % is a temporary table', relation
            USING ERRCODE = 'wrong_object_type', HINT = 'A source outlives the session: register a permanent table.';
    END IF;
    IF c.relpersistence = 'u' THEN
        RAISE EXCEPTION 'register_source: % is an unlogged table', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Its inserts are not written to the WAL, so the stream would never see them.',
                  HINT = format('Make it a logged table first: ALTER TABLE %s SET LOGGED.', relation);
    END IF;
    IF c.relkind = 'v' OR c.relkind = 'm' THEN
        RAISE EXCEPTION 'register_source: % is a view', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'A view holds no rows of its own: the stream sees inserts into tables.',
                  HINT = 'Register the table the events are written to.';
    END IF;
    IF c.relkind = 'f' THEN
        RAISE EXCEPTION 'register_source: % is a foreign table', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Its rows live in another server, whose inserts are not in this database''s WAL.',
                  HINT = 'Register the table the events are written to, on the server that holds it.';
    END IF;
    IF c.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'register_source: % is not a table', relation
            USING ERRCODE = 'wrong_object_type', HINT = 'Register the table the events are written to.';
    END IF;
    -- a partition's rows are its parent's events: the parent is the source
    IF c.relispartition THEN
        RAISE EXCEPTION 'register_source: % is a partition of %', relation,
                        (SELECT a::regclass FROM pg_partition_ancestors(relation) a
                          WHERE NOT (SELECT r.relispartition FROM pg_class r WHERE r.oid = a))
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Inserts into any partition, also one attached later, are events of the partitioned table.',
                  HINT = 'Register the partitioned table.';
    END IF;
    -- (a partition registered by 0.5.0, which allowed it, would count twice)
    IF c.relkind = 'p' AND EXISTS (SELECT 1 FROM pg_partition_tree(_check_source_kind.relation) t
                                      JOIN personalize.sources s ON s.relation = t.relid
                                    WHERE t.relid <> _check_source_kind.relation) THEN
        RAISE EXCEPTION 'register_source: a partition of % is a source already', relation
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'Its rows would be events twice.',
                  HINT = 'Unregister the partition first with personalize.unregister_source().';
    END IF;
    IF c.relkind = 'p' AND EXISTS (SELECT 1 FROM pg_partition_tree(relation) t JOIN pg_class r ON r.oid = t.relid
                                     WHERE r.relkind = 'f' OR r.relpersistence = 'u') THEN
        RAISE EXCEPTION 'register_source: % has a foreign or unlogged partition', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Rows routed to it are not in this database''s WAL, so the stream would never see them.',
                  HINT = 'Detach that partition first.';
    END IF;
END $$;

-- The caller may change the configuration: a member of personalize_admin.
-- (The caller of the configuration function under way, which runs as the
-- extension's owner.)
CREATE OR REPLACE FUNCTION _require_admin(action text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    who regrole := personalize._configuring_role();
BEGIN
    PERFORM personalize._refuse_in_restricted(action);
    IF NOT pg_has_role(who, 'personalize_admin', 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to %', action
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Changing personalize''s configuration needs the personalize_admin role: GRANT personalize_admin TO %s.', who);
    END IF;
END $$;

CREATE OR REPLACE FUNCTION _field_expr(source_id integer, field text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f record;
    rel regclass;
BEGIN
    SELECT relation INTO rel FROM personalize.sources s WHERE s.id = source_id;
    SELECT * INTO f FROM personalize.source_fields sf WHERE sf.source_id = _field_expr.source_id AND sf.field = _field_expr.field;
    IF FOUND THEN
        IF f.json_key IS NOT NULL THEN
            RETURN format('(e.%I ->> %L)', f.column_name, f.json_key);
        END IF;
        RETURN personalize._column_text_sql(rel, f.column_name);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = field
                  AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RETURN personalize._column_text_sql(rel, field::name);
    END IF;
    RETURN NULL;
END $$;

-- refused: the SQL that counts, per event key, the rows the stream takes
-- for no events (for the rebuild's dead letters), instead of the partial
-- states of the others
DROP FUNCTION _source_part_sql(integer, integer[]);
CREATE FUNCTION _source_part_sql(source_id integer, trait_ids integer[], refused boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s personalize.sources;
    id_cols text;
    key_expr text;
    time_expr text;
    type_expr text;
    states text := '''{}''::personalize.profile';
    agg text;
    filt text;
    ts record;
    tr personalize.traits;
    max_bytes integer := (SELECT st.setting::integer FROM pg_settings st WHERE st.name = 'personalize.max_value_bytes');
    cond text;
BEGIN
    SELECT * INTO s FROM personalize.sources WHERE id = source_id;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.relation) THEN
        RAISE EXCEPTION 'source % (id %) was dropped', s.relation, s.id
            USING ERRCODE = 'undefined_table', HINT = 'Unregister it with personalize.unregister_source().';
    END IF;
    SELECT string_agg(format('e.%I', si.column_name), ', ' ORDER BY n.name),
           'jsonb_build_object(' || string_agg(format('%L, %s', n.name, personalize._column_text_sql(s.relation, si.column_name)), ', ' ORDER BY n.name) || ')'
      INTO id_cols, key_expr
      FROM personalize.source_identifiers si JOIN personalize.namespaces n ON n.id = si.namespace_id
     WHERE si.source_id = s.id;
    -- a timestamp without time zone is UTC, a date its midnight UTC, whatever
    -- the session's TimeZone: the stream reads them so (decoder.c)
    time_expr := CASE (SELECT a.atttypid FROM pg_attribute a
                        WHERE a.attrelid = s.relation AND a.attname = s.event_time_column AND NOT a.attisdropped)
                      WHEN 'timestamp'::regtype THEN format('((e.%I) AT TIME ZONE ''UTC'')', s.event_time_column)
                      WHEN 'date'::regtype THEN format('((e.%I)::timestamp AT TIME ZONE ''UTC'')', s.event_time_column)
                      ELSE format('(e.%I)::timestamptz', s.event_time_column) END;
    type_expr := CASE WHEN s.event_type_column IS NOT NULL THEN personalize._column_text_sql(s.relation, s.event_type_column)
                      ELSE coalesce(quote_literal(s.event_type), 'NULL::text') END;
    FOR tr IN SELECT * FROM personalize.traits t
               WHERE trait_ids IS NULL OR t.id = ANY (trait_ids) ORDER BY t.id LOOP
        SELECT * INTO ts FROM personalize._trait_sources(tr.id) x WHERE x.source_id = s.id;
        CONTINUE WHEN NOT FOUND;
        filt := CASE WHEN tr.event_types IS NOT NULL
                     THEN format(' FILTER (WHERE %s = ANY (%L::text[]))', type_expr, tr.event_types) ELSE '' END;
        agg := CASE tr.kind
            WHEN 'count' THEN format('personalize.metric_state_make(''count'', count(%s)%s, NULL)', coalesce(ts.value_expr, '*'), filt)
            -- numbers read and compared by the stream's C code (field.c, metric.c)
            WHEN 'sum' THEN format('personalize.metric_agg(''sum'', personalize._field_number(%s))%s', ts.value_expr, filt)
            WHEN 'min' THEN format('personalize.metric_agg(''min'', personalize._field_number(%s))%s', ts.value_expr, filt)
            WHEN 'max' THEN format('personalize.metric_agg(''max'', personalize._field_number(%s))%s', ts.value_expr, filt)
            WHEN 'first' THEN format('personalize.first_agg(%s, %s)%s', ts.value_expr, time_expr, filt)
            WHEN 'last' THEN format('personalize.last_agg(%s, %s)%s', ts.value_expr, time_expr, filt)
            WHEN 'recent' THEN format('personalize.recent_agg(%s, %s, %s)%s', ts.value_expr, time_expr, tr.n, filt)
            WHEN 'top' THEN format('personalize.top_agg(%s, %s, %s, %L::interval)%s', ts.value_expr, time_expr, tr.n, tr.half_life, filt)
            WHEN 'windowed_count' THEN
                CASE WHEN ts.value_expr IS NULL THEN format('personalize.windowed_agg(%s)%s', time_expr, filt)
                     ELSE format('personalize.windowed_agg(%s)%s', time_expr,
                                 CASE WHEN filt = '' THEN format(' FILTER (WHERE %s IS NOT NULL)', ts.value_expr)
                                      ELSE format(' FILTER (WHERE %s = ANY (%L::text[]) AND %s IS NOT NULL)', type_expr, tr.event_types, ts.value_expr) END) END
            WHEN 'windowed_sum' THEN format('personalize.windowed_agg(%s, personalize._field_float8(%s))%s', time_expr, ts.value_expr, filt)
            WHEN 'distinct' THEN format('personalize.distinct_agg(%s, %s)%s', ts.value_expr, tr.hll_precision, filt)
            WHEN 'session' THEN format('personalize.session_agg(%s, %s, %s, %L::interval)%s', time_expr, ts.value_expr,
                                       coalesce(ts.item_expr, 'NULL::text'), tr.gap, filt)
        END;
        states := format(E'personalize.profile_set(%s,\n        %s, %s)', states, tr.id, agg);
    END LOOP;
    -- the rows the stream takes as events, and no other: a finite time;
    -- identifiers, and the values of every trait whose event types the row
    -- passes, no longer than personalize.max_value_bytes (the stream keeps
    -- the others as dead letters, and so does the rebuild, counting them in
    -- a scan of their own; an ERROR of an aggregate on them would stop the
    -- whole rebuild)
    cond := format('%s IS NOT NULL AND isfinite(%1$s)', time_expr);
    SELECT cond || coalesce(string_agg(format(' AND coalesce(octet_length(%s), 0) <= %s',
                                              personalize._column_text_sql(s.relation, si.column_name), max_bytes), ''), '')
      INTO cond FROM personalize.source_identifiers si WHERE si.source_id = s.id;
    -- json (not jsonb) documents read by key nest at most 1000 levels deep
    SELECT cond || coalesce(string_agg(DISTINCT format(' AND (e.%I IS NULL OR personalize._json_depth_ok(e.%1$I))', sf.column_name), ''), '')
      INTO cond
      FROM personalize.source_fields sf JOIN pg_attribute a ON a.attrelid = s.relation AND a.attname = sf.column_name
     WHERE sf.source_id = s.id AND sf.json_key IS NOT NULL AND a.atttypid = 'json'::regtype;
    FOR tr IN SELECT * FROM personalize.traits t ORDER BY t.id LOOP
        SELECT * INTO ts FROM personalize._trait_sources(tr.id) x WHERE x.source_id = s.id;
        CONTINUE WHEN NOT FOUND OR (ts.value_expr IS NULL AND ts.item_expr IS NULL);
        cond := cond || format(' AND (%s coalesce(octet_length(%s), 0) <= %s AND coalesce(octet_length(%s), 0) <= %s)',
                               CASE WHEN tr.event_types IS NOT NULL
                                    THEN format('%s IS NULL OR NOT %1$s = ANY (%L::text[]) OR', type_expr, tr.event_types) ELSE '' END,
                               coalesce(ts.value_expr, 'NULL'), max_bytes, coalesce(ts.item_expr, 'NULL'), max_bytes);
    END LOOP;
    -- a partitioned table reads its partitions, as the stream does; a
    -- table's inheritance children are not read (the stream sees only its
    -- own inserts)
    IF refused THEN
        RETURN format(E'SELECT %s AS key, %s AS source_id, count(*) AS refused\n'
                      '  FROM %s%s AS e\n WHERE NOT coalesce(%s, false)\n GROUP BY %s',
                      key_expr, s.id,
                      CASE WHEN (SELECT c.relkind FROM pg_class c WHERE c.oid = s.relation) = 'p' THEN '' ELSE 'ONLY ' END,
                      s.relation, cond, id_cols);
    END IF;
    RETURN format(E'SELECT %s AS key, min(%s) AS t0, max(%s) AS t1,\n       %s AS states, %s AS source_id, count(*) AS events\n'
                  '  FROM %s%s AS e\n WHERE %s\n GROUP BY %s',
                  key_expr, time_expr, time_expr, states, s.id,
                  CASE WHEN (SELECT c.relkind FROM pg_class c WHERE c.oid = s.relation) = 'p' THEN '' ELSE 'ONLY ' END,
                  s.relation, cond, id_cols);
END $$;

CREATE OR REPLACE FUNCTION _rebuild(only_profile bigint, trait_ids integer[], only_source integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src record;
    parts text[] := '{}';
    refused_parts text[] := '{}';
    read_sources integer[] := '{}';
    kr record;
    n bigint;
    strip text := 'p.states';
    tid integer;
    problem text;
    skipped integer := 0;
    broken record;
    err_state text;
    err_message text;
    err_detail text;
    err_hint text;
BEGIN
    -- one rebuild at a time: two would each write every profile
    PERFORM personalize._rebuild_lock();
    IF only_source IS NULL THEN
        PERFORM personalize._quiesce(NULL, 'rebuild', true);
    ELSE
        PERFORM personalize._quiesce(ARRAY[only_source], 'register_source', false);
    END IF;
    FOR src IN SELECT s.* FROM personalize.sources s
                WHERE only_source IS NULL OR s.id = only_source ORDER BY s.id LOOP
        -- a trait's backfill reads only the sources the trait reads
        CONTINUE WHEN trait_ids IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM unnest(trait_ids) t(id), personalize._trait_sources(t.id) ts
                                   WHERE ts.source_id = src.id);
        -- read with the rights of the role that registered it, as the stream,
        -- and only as registered (checked after _quiesce locked it)
        problem := coalesce(personalize._source_shape_problem(src.id),
                            personalize._source_read_problem(src.relation, src.owner, personalize._source_columns(src.id, false)));
        IF problem IS NOT NULL THEN
            RAISE WARNING 'rebuild: source % is not read: %', src.relation, problem
                USING HINT = 'Its rows are left out of the profiles until its owner may read them again; see personalize.dead_letters.';
            INSERT INTO personalize.dead_letters (source, applied, events, reason)
            VALUES (src.relation, false, 0, format('%s: rebuild() did not read the source', problem));
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        parts := parts || personalize._source_part_sql(src.id, trait_ids);
        refused_parts := refused_parts || personalize._source_part_sql(src.id, NULL, true);
        read_sources := read_sources || src.id;
    END LOOP;
    IF cardinality(parts) = 0 THEN
        IF skipped = 0 THEN
            RETURN 0;  -- no source: nothing to rebuild from
        END IF;
        -- every source was left out: the profiles keep nothing of them
        parts := ARRAY['SELECT NULL::jsonb AS key, NULL::timestamptz AS t0, NULL::timestamptz AS t1, '
                       '''{}''::personalize.profile AS states, 0 AS source_id, 0::bigint AS events WHERE false'];
    END IF;

    -- 1. partial states per event key.  An ERROR here (a trait's parameters
    --    written by hand past add_trait's checks, say) names the trait and
    --    the source it reads, not the SQL generated for them.
    BEGIN
        EXECUTE E'CREATE TEMP TABLE pz_rebuild_part ON COMMIT DROP AS\n'
                || array_to_string(parts, E'\nUNION ALL\n');
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
                                err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
        err_message := format('rebuild: %s cannot be read: %s',
                              coalesce(personalize._rebuild_culprit(trait_ids, read_sources), 'a source'), err_message);
        err_hint := coalesce(nullif(err_hint, ''), 'Correct the trait with personalize.alter_trait(), or the source''s rows.');
        IF coalesce(err_detail, '') = '' THEN
            RAISE EXCEPTION USING ERRCODE = err_state, MESSAGE = err_message, HINT = err_hint;
        END IF;
        RAISE EXCEPTION USING ERRCODE = err_state, MESSAGE = err_message, DETAIL = err_detail, HINT = err_hint;
    END;
    -- 1a. rows that are no events are left out, each a dead letter, as in the
    --     stream: no time, an infinite time, an identifier or a value longer
    --     than personalize.max_value_bytes (refused), no identifier at all
    --     (written by full rebuilds and source backfills; a trait's backfill
    --     or one profile's rebuild reads rows these have told of already)
    IF trait_ids IS NULL AND only_profile IS NULL AND cardinality(refused_parts) > 0 THEN
        EXECUTE E'INSERT INTO personalize.dead_letters (source, applied, events, reason, event)\n'
                'SELECT s.relation, false, r.refused, ''rebuild() left out rows that are no events: no time, '
                'an infinite time, or an identifier or a value longer than personalize.max_value_bytes'', r.key\n'
                '  FROM (' || array_to_string(refused_parts, E'\nUNION ALL\n') || E') r\n'
                '  JOIN personalize.sources s ON s.id = r.source_id';
    END IF;
    IF trait_ids IS NULL AND only_profile IS NULL THEN
        INSERT INTO personalize.dead_letters (source, applied, events, reason, event)
        SELECT s.relation, false, p.events, 'the event has no identifier (every identifier column is NULL)', p.key
          FROM pg_temp.pz_rebuild_part p JOIN personalize.sources s ON s.id = p.source_id
         WHERE jsonb_strip_nulls(p.key) = '{}'::jsonb;
    END IF;
    DELETE FROM pg_temp.pz_rebuild_part p WHERE jsonb_strip_nulls(p.key) = '{}'::jsonb;
    -- 1b. identifiers of a namespace that cannot normalize (its normalizer
    --     dropped, broken by hand, or not executable by its owner): their
    --     events are dead letters, as in the stream, and the rest goes on
    FOR broken IN SELECT n.name, personalize._namespace_problem(n.name) AS problem
                    FROM personalize.namespaces n ORDER BY n.id LOOP
        CONTINUE WHEN broken.problem IS NULL;
        INSERT INTO personalize.dead_letters (source, applied, events, reason, event)
        SELECT s.relation, false, p.events, 'resolving its identifiers failed: ' || broken.problem, p.key
          FROM pg_temp.pz_rebuild_part p JOIN personalize.sources s ON s.id = p.source_id
         WHERE p.key ->> broken.name IS NOT NULL;
        DELETE FROM pg_temp.pz_rebuild_part p WHERE p.key ->> broken.name IS NOT NULL;
    END LOOP;
    CREATE TEMP TABLE pz_rebuild_key ON COMMIT DROP AS
    SELECT row_number() OVER () AS key_id, key, t0
      FROM (SELECT key, min(t0) AS t0 FROM pg_temp.pz_rebuild_part GROUP BY key) k;
    -- 2. the keys' usable identifiers, normalized (blocked and unusable ones
    --    drop out).  A normalizer that raises on a value makes its key's
    --    events dead letters, as in the stream, and the rest goes on.
    CREATE TEMP TABLE pz_rebuild_id ON COMMIT DROP AS
    SELECT k.key_id, k.key, ns.id AS namespace_id, ns.priority, ns.name,
           n.normalized COLLATE "C" AS value, n.problem AS norm_problem
      FROM pg_temp.pz_rebuild_key k, jsonb_each_text(k.key) j
      JOIN personalize.namespaces ns ON ns.name = j.key,
           LATERAL personalize._normalize_checked(ns.name, j.value) n
     WHERE j.value IS NOT NULL;
    IF EXISTS (SELECT 1 FROM pg_temp.pz_rebuild_id x WHERE x.norm_problem IS NOT NULL) THEN
        INSERT INTO personalize.dead_letters (source, applied, events, reason, event)
        SELECT s.relation, false, p.events, 'resolving its identifiers failed: ' || bad.norm_problem, p.key
          FROM (SELECT DISTINCT ON (x.key) x.key, x.norm_problem FROM pg_temp.pz_rebuild_id x
                 WHERE x.norm_problem IS NOT NULL ORDER BY x.key, x.name) bad
          JOIN pg_temp.pz_rebuild_part p ON p.key = bad.key
          JOIN personalize.sources s ON s.id = p.source_id;
        DELETE FROM pg_temp.pz_rebuild_part p
         WHERE p.key IN (SELECT x.key FROM pg_temp.pz_rebuild_id x WHERE x.norm_problem IS NOT NULL);
        DELETE FROM pg_temp.pz_rebuild_key k
         WHERE k.key IN (SELECT x.key FROM pg_temp.pz_rebuild_id x WHERE x.norm_problem IS NOT NULL);
        DELETE FROM pg_temp.pz_rebuild_id i
         WHERE i.key IN (SELECT x.key FROM pg_temp.pz_rebuild_id x WHERE x.norm_problem IS NOT NULL);
    END IF;
    DELETE FROM pg_temp.pz_rebuild_id WHERE value IS NULL;
    ANALYZE pg_temp.pz_rebuild_id;
    -- keys none of whose identifiers is usable (blocked, or nothing to the
    -- normalizer): their events are dead letters, as in the stream
    IF trait_ids IS NULL AND only_profile IS NULL THEN
        INSERT INTO personalize.dead_letters (source, applied, events, reason, event)
        SELECT s.relation, false, p.events,
               'no usable identifier: every identifier is NULL, blocked, or not usable by its namespace''s normalizer', p.key
          FROM pg_temp.pz_rebuild_part p JOIN personalize.sources s ON s.id = p.source_id
         WHERE NOT EXISTS (SELECT 1 FROM pg_temp.pz_rebuild_id i WHERE i.key = p.key);
    END IF;
    -- 3. identity resolution: a key with an identifier the graph has not
    --    seen links its identifiers, in the order of first events.
    --    Identifiers the graph knows are never linked again here, so splits
    --    and refused links stand.
    FOR kr IN SELECT rk.key FROM pg_temp.pz_rebuild_key rk
              WHERE EXISTS (SELECT 1 FROM pg_temp.pz_rebuild_id i
                             WHERE i.key = rk.key
                               AND NOT EXISTS (SELECT 1 FROM personalize.identities x
                                                WHERE x.namespace_id = i.namespace_id AND x.value = i.value))
              ORDER BY rk.t0, rk.key LOOP
        PERFORM personalize.identify(kr.key);
    END LOOP;
    -- 4. each key's events go to the profile of its best identifier
    --    (sorted by the key's number: comparing jsonb keys costs more)
    CREATE TEMP TABLE pz_rebuild_key_profile ON COMMIT DROP AS
    SELECT DISTINCT ON (i.key_id) i.key, x.profile_id
      FROM pg_temp.pz_rebuild_id i
      JOIN personalize.identities x ON x.namespace_id = i.namespace_id AND x.value = i.value
     ORDER BY i.key_id, i.priority DESC, i.name COLLATE "C", i.value COLLATE "C";
    ANALYZE pg_temp.pz_rebuild_key_profile;
    ANALYZE pg_temp.pz_rebuild_part;

    -- 5. the partial states merged per profile
    CREATE TEMP TABLE pz_rebuilt ON COMMIT DROP AS
    SELECT k.profile_id, min(pt.t0) AS first_seen, max(pt.t1) AS last_seen,
           personalize.merge_agg(pt.states) AS states
      FROM pg_temp.pz_rebuild_part pt JOIN pg_temp.pz_rebuild_key_profile k ON k.key = pt.key
     WHERE only_profile IS NULL OR k.profile_id = only_profile
     GROUP BY k.profile_id;
    CREATE UNIQUE INDEX ON pg_temp.pz_rebuilt (profile_id);
    ANALYZE pg_temp.pz_rebuilt;

    -- 6. write each profile once
    IF only_source IS NOT NULL THEN
        UPDATE personalize.profiles p
           SET states = personalize.profile_merge(p.states, r.states),
               first_seen = least(p.first_seen, r.first_seen),
               last_seen = greatest(p.last_seen, r.last_seen),
               updated_at = now()
          FROM pg_temp.pz_rebuilt r
         WHERE p.id = r.profile_id;
    ELSIF trait_ids IS NOT NULL THEN
        FOREACH tid IN ARRAY trait_ids LOOP
            strip := format('personalize.profile_remove(%s, %s)', strip, tid);
        END LOOP;
        EXECUTE format('UPDATE personalize.profiles p SET states = personalize.profile_merge(%s, r.states), updated_at = now()
                          FROM pg_temp.pz_rebuilt r
                         WHERE p.id = r.profile_id', strip);
        -- profiles without events for these traits keep none of their old states
        EXECUTE format('UPDATE personalize.profiles p SET states = %s, updated_at = now()
                         WHERE NOT personalize.profile_eq(p.states, %1$s)
                           AND NOT EXISTS (SELECT 1 FROM pg_temp.pz_rebuilt r WHERE r.profile_id = p.id)
                           AND ($1 IS NULL OR p.id = $1)', strip) USING only_profile;
    ELSE
        UPDATE personalize.profiles p
           SET states = coalesce(r.states, '{}'), first_seen = r.first_seen, last_seen = r.last_seen,
               updated_at = now(), rebuild_pending = false
          FROM personalize.profiles p2 LEFT JOIN pg_temp.pz_rebuilt r ON r.profile_id = p2.id
         WHERE p.id = p2.id AND (only_profile IS NULL OR p.id = only_profile);
    END IF;
    SELECT count(*) INTO n FROM pg_temp.pz_rebuilt;
    DROP TABLE pg_temp.pz_rebuild_part, pg_temp.pz_rebuild_key, pg_temp.pz_rebuild_id,
               pg_temp.pz_rebuild_key_profile, pg_temp.pz_rebuilt;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION _stream_refresh() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM personalize.stream_traits;
    DELETE FROM personalize.stream_sources;
    INSERT INTO personalize.stream_sources
    SELECT s.id, s.relation, s.event_time_column, s.event_type_column, s.event_type,
           coalesce(array_agg(si.column_name ORDER BY si.namespace_id) FILTER (WHERE si.column_name IS NOT NULL), '{}'),
           coalesce(array_agg(si.namespace_id ORDER BY si.namespace_id) FILTER (WHERE si.column_name IS NOT NULL), '{}'),
           s.owner
      FROM personalize.sources s LEFT JOIN personalize.source_identifiers si ON si.source_id = s.id
     WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.relation)
     GROUP BY s.id;
    INSERT INTO personalize.stream_traits
    SELECT t.id, ts.source_id, t.kind, t.n,
           (extract(epoch FROM t.half_life) * 1000000)::bigint,
           (extract(epoch FROM t.gap) * 1000000)::bigint,
           t.hll_precision, t.event_types,
           v.column_name, v.json_key, i.column_name, i.json_key
      FROM personalize.traits t
     CROSS JOIN LATERAL personalize._trait_sources(t.id) ts
      LEFT JOIN LATERAL personalize._field_ref(ts.source_id, t.field) v ON t.field IS NOT NULL
      LEFT JOIN LATERAL personalize._field_ref(ts.source_id, t.item_field) i ON t.item_field IS NOT NULL
     WHERE ts.source_id IN (SELECT source_id FROM personalize.stream_sources);
    RETURN NULL;
END $$;

-- the derived table learns the owners (a statement trigger fires for an
-- UPDATE of no rows too)
UPDATE sources SET relation = relation;

-- ===========================================================================
-- The configuration functions: a C entry records the caller and runs the
-- SECURITY DEFINER implementation of the same arguments
-- ===========================================================================

CREATE FUNCTION _register_source(relation regclass,
                                identifiers jsonb,
                                event_time name,
                                event_type text,
                                event_type_column name,
                                fields jsonb,
                                backfill boolean)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sid integer;
    caller regrole := personalize._configuring_role();
    problem text;
    t oid;
    kv record;
    ns_id integer;
    col text;
    key text;
BEGIN
    PERFORM personalize._require_admin('register a source');
    IF relation IS NULL THEN
        RAISE EXCEPTION 'register_source: relation must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM personalize._check_source_kind(relation);
    IF relation::oid IN (SELECT c.objid FROM pg_depend c
                          WHERE c.classid = 'pg_class'::regclass AND c.deptype = 'e'
                            AND c.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')) THEN
        RAISE EXCEPTION 'register_source: % is a table of personalize itself', relation
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = _register_source.relation) THEN
        RAISE EXCEPTION 'register_source: % is already a source', relation
            USING ERRCODE = 'duplicate_object', HINT = 'Unregister it first with personalize.unregister_source().';
    END IF;
    IF identifiers IS NULL OR jsonb_typeof(identifiers) <> 'object' OR identifiers = '{}' THEN
        RAISE EXCEPTION 'register_source: identifiers must be a non-empty JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map identifier columns to namespaces: ''{"customer_id": "customer_id", "email": "email"}''.';
    END IF;
    IF fields IS NULL OR jsonb_typeof(fields) <> 'object' THEN
        RAISE EXCEPTION 'register_source: fields must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name fields by column or jsonb key: ''{"sku": "product_sku", "size": {"column": "props", "key": "size"}}''.';
    END IF;
    IF event_type IS NOT NULL AND event_type_column IS NOT NULL THEN
        RAISE EXCEPTION 'register_source: give event_type (a constant) or event_type_column, not both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    t := personalize._column_type(relation, event_time, 'event time');
    IF t NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RAISE EXCEPTION 'register_source: event time column % is of type %', quote_ident(event_time), t::regtype
            USING ERRCODE = 'datatype_mismatch', HINT = 'The event time must be a timestamptz, timestamp or date column.';
    END IF;
    IF event_type_column IS NOT NULL THEN
        t := personalize._column_type(relation, event_type_column, 'event type');
        IF NOT personalize._is_scalar_type(t) THEN
            RAISE EXCEPTION 'register_source: event type column % is of type %', quote_ident(event_type_column), t::regtype
                USING ERRCODE = 'datatype_mismatch', HINT = 'The event type must be a text, number or enum column.';
        END IF;
    END IF;

    INSERT INTO personalize.sources (relation, event_time_column, event_type_column, event_type, owner)
    VALUES (relation, event_time, event_type_column, event_type, caller) RETURNING id INTO sid;

    FOR kv IN SELECT * FROM jsonb_each(identifiers) LOOP
        col := kv.key;
        IF jsonb_typeof(kv.value) <> 'string' THEN
            RAISE EXCEPTION 'register_source: the namespace of identifier column % must be a string', quote_ident(col)
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Map each column to a namespace name: {"email": "email"}.';
        END IF;
        t := personalize._column_type(relation, col, 'identifier');
        IF NOT personalize._is_scalar_type(t) THEN
            RAISE EXCEPTION 'register_source: identifier column % is of type %', quote_ident(col), t::regtype
                USING ERRCODE = 'datatype_mismatch', HINT = 'Identifiers are text, numbers or uuids.';
        END IF;
        SELECT n.id INTO ns_id FROM personalize.namespaces n WHERE n.name = kv.value #>> '{}';
        IF ns_id IS NULL THEN
            RAISE EXCEPTION 'register_source: unknown namespace %', quote_literal(kv.value #>> '{}')
                USING ERRCODE = 'undefined_object',
                      HINT = coalesce('Namespaces: ' || (SELECT string_agg(n.name, ', ' ORDER BY n.name) FROM personalize.namespaces n) || '.',
                                      'Create one with personalize.create_namespace().');
        END IF;
        IF EXISTS (SELECT 1 FROM personalize.source_identifiers si WHERE si.source_id = sid AND si.namespace_id = ns_id) THEN
            RAISE EXCEPTION 'register_source: two columns hold namespace %', kv.value #>> '{}'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Map one column per namespace; register a view-free copy or a second source for the other column.';
        END IF;
        INSERT INTO personalize.source_identifiers VALUES (sid, col, ns_id);
    END LOOP;

    FOR kv IN SELECT * FROM jsonb_each(fields) LOOP
        PERFORM personalize._check_name('field', kv.key);
        IF jsonb_typeof(kv.value) = 'string' THEN
            col := kv.value #>> '{}';
            key := NULL;
        ELSIF jsonb_typeof(kv.value) = 'object' AND kv.value ? 'column'
              AND (SELECT count(*) FROM jsonb_object_keys(kv.value) k WHERE k NOT IN ('column', 'key')) = 0 THEN
            col := kv.value ->> 'column';
            key := kv.value ->> 'key';
        ELSE
            RAISE EXCEPTION 'register_source: field % must name a column or {"column": ..., "key": ...}', kv.key
                USING ERRCODE = 'invalid_parameter_value', HINT = 'E.g. {"sku": "product_sku", "size": {"column": "props", "key": "size"}}.';
        END IF;
        t := personalize._column_type(relation, col, format('field %s', kv.key));
        IF key IS NOT NULL AND t NOT IN ('jsonb'::regtype, 'json'::regtype) THEN
            RAISE EXCEPTION 'register_source: field % reads key % of column %, which is of type %', kv.key, quote_literal(key), quote_ident(col), t::regtype
                USING ERRCODE = 'datatype_mismatch', HINT = 'Keys are read from json or jsonb columns.';
        ELSIF key IS NULL AND NOT personalize._is_scalar_type(t) THEN
            RAISE EXCEPTION 'register_source: field % is column % of type %', kv.key, quote_ident(col), t::regtype
                USING ERRCODE = 'datatype_mismatch', HINT = 'A field is a text, number, uuid or enum column, or a key of a jsonb column.';
        END IF;
        INSERT INTO personalize.source_fields VALUES (sid, kv.key, col, key);
    END LOOP;

    -- traits restricted to named sources must find their fields here too
    PERFORM personalize._check_trait_sources(t.id) FROM personalize.traits t;
    -- the stream reads it with the caller's rights: they must cover every
    -- column mapped, and every row
    PERFORM personalize._note_unstreamed();
    problem := personalize._source_read_problem(relation, caller, personalize._source_columns(sid, true));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'register_source: %', problem
            USING ERRCODE = 'insufficient_privilege',
                  HINT = CASE WHEN problem LIKE 'row-level security%'
                              THEN 'Sources are read in full: register it as its owner (row-level security not forced) or as a role with BYPASSRLS, or disable row-level security on it.'
                              ELSE format('The source is read with the rights of the role that registers it: GRANT SELECT ON %s TO %s.', relation, caller) END;
    END IF;
    PERFORM personalize._regenerate_view();
    IF backfill THEN
        PERFORM personalize._rebuild(NULL, NULL, sid);
    END IF;
    RETURN sid;
END $$;

CREATE FUNCTION _unregister_source(relation regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    used text;
BEGIN
    PERFORM personalize._require_admin('unregister a source');
    IF NOT EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = _unregister_source.relation) THEN
        RAISE EXCEPTION 'unregister_source: % is not a source', relation
            USING ERRCODE = 'undefined_object',
                  HINT = coalesce('Sources: ' || (SELECT string_agg(s.relation::text, ', ' ORDER BY s.id) FROM personalize.sources s) || '.', 'No source is registered.');
    END IF;
    SELECT string_agg(t.name, ', ' ORDER BY t.name) INTO used
      FROM personalize.traits t WHERE relation = ANY (t.sources);
    IF used IS NOT NULL THEN
        RAISE EXCEPTION 'unregister_source: traits % read only named sources, among them %', used, relation
            USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Alter or drop those traits first.';
    END IF;
    DELETE FROM personalize.sources s WHERE s.relation = _unregister_source.relation;
END $$;

CREATE FUNCTION _add_trait(name text, kind text,
                          field text,
                          sources regclass[],
                          event_types text[],
                          n integer,
                          half_life interval,
                          windows interval[],
                          gap interval,
                          item_field text,
                          hll_precision integer,
                          backfill boolean)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tr personalize.traits;
BEGIN
    PERFORM personalize._require_admin('add a trait');
    tr.name := name; tr.kind := kind; tr.field := field; tr.sources := sources;
    tr.event_types := event_types; tr.n := n; tr.half_life := half_life; tr.windows := windows;
    tr.gap := gap; tr.item_field := item_field; tr.hll_precision := hll_precision;
    tr := personalize._check_trait(tr);
    IF EXISTS (SELECT 1 FROM personalize.traits t WHERE t.name = tr.name) THEN
        RAISE EXCEPTION 'trait % already exists', tr.name
            USING ERRCODE = 'duplicate_object', HINT = 'Change it with personalize.alter_trait() or drop it first.';
    END IF;
    INSERT INTO personalize.traits (name, kind, field, item_field, sources, event_types, n, half_life, windows, gap, hll_precision)
    VALUES (tr.name, tr.kind, tr.field, tr.item_field, tr.sources, tr.event_types, tr.n, tr.half_life, tr.windows, tr.gap, tr.hll_precision)
    RETURNING id INTO tr.id;
    PERFORM personalize._check_trait_sources(tr.id);
    PERFORM personalize._check_trait_field(tr.id);
    PERFORM personalize._check_trait_access(tr.id, personalize._configuring_role());
    PERFORM personalize._note_unstreamed();
    PERFORM personalize._regenerate_view();
    IF backfill THEN
        PERFORM personalize._rebuild(NULL, ARRAY[tr.id], NULL);
    END IF;
    RETURN tr.id;
END $$;

CREATE FUNCTION _alter_trait(name text,
                            kind text,
                            field text,
                            sources regclass[],
                            event_types text[],
                            n integer,
                            half_life interval,
                            windows interval[],
                            gap interval,
                            item_field text,
                            hll_precision integer,
                            all_sources boolean,
                            all_event_types boolean,
                            backfill boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old personalize.traits;
    tr personalize.traits;
BEGIN
    PERFORM personalize._require_admin('alter a trait');
    SELECT * INTO old FROM personalize.traits t WHERE t.name = _alter_trait.name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM personalize._unknown_trait(_alter_trait.name);
    END IF;
    tr := old;
    IF kind IS NOT NULL AND kind <> old.kind THEN
        -- parameters of the old kind do not carry over
        tr.kind := kind; tr.n := NULL; tr.half_life := NULL; tr.windows := NULL; tr.gap := NULL;
        tr.hll_precision := NULL; tr.item_field := NULL;
    END IF;
    tr.field := coalesce(field, tr.field);
    tr.item_field := coalesce(item_field, tr.item_field);
    tr.sources := CASE WHEN all_sources THEN NULL ELSE coalesce(sources, tr.sources) END;
    tr.event_types := CASE WHEN all_event_types THEN NULL ELSE coalesce(event_types, tr.event_types) END;
    tr.n := coalesce(n, tr.n);
    tr.half_life := coalesce(half_life, tr.half_life);
    tr.windows := coalesce(windows, tr.windows);
    tr.gap := coalesce(gap, tr.gap);
    tr.hll_precision := coalesce(hll_precision, tr.hll_precision);
    tr := personalize._check_trait(tr);
    UPDATE personalize.traits t
       SET kind = tr.kind, field = tr.field, item_field = tr.item_field, sources = tr.sources,
           event_types = tr.event_types, n = tr.n, half_life = tr.half_life, windows = tr.windows,
           gap = tr.gap, hll_precision = tr.hll_precision, changed_at = now()
     WHERE t.id = tr.id;
    PERFORM personalize._check_trait_sources(tr.id);
    PERFORM personalize._check_trait_field(tr.id);
    PERFORM personalize._check_trait_access(tr.id, personalize._configuring_role());
    PERFORM personalize._note_unstreamed();
    PERFORM personalize._regenerate_view();
    -- the states were built under the old definition: never keep them
    IF backfill THEN
        PERFORM personalize._rebuild(NULL, ARRAY[tr.id], NULL);
    ELSE
        UPDATE personalize.profiles p SET states = personalize.profile_remove(p.states, tr.id), updated_at = now()
         WHERE tr.id = ANY (personalize.profile_traits(p.states));
    END IF;
END $$;

CREATE FUNCTION _drop_trait(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tid integer;
BEGIN
    PERFORM personalize._require_admin('drop a trait');
    SELECT t.id INTO tid FROM personalize.traits t WHERE t.name = _drop_trait.name;
    IF tid IS NULL THEN
        PERFORM personalize._unknown_trait(_drop_trait.name);
    END IF;
    -- events already committed to its sources are applied first: none of
    -- them may bring the state back once it is removed
    PERFORM personalize._rebuild_lock();
    PERFORM personalize._quiesce(ARRAY(SELECT st.source_id FROM personalize.stream_traits st WHERE st.trait_id = tid),
                                 'drop_trait', true);
    DELETE FROM personalize.traits t WHERE t.id = tid;
    UPDATE personalize.profiles p SET states = personalize.profile_remove(p.states, tid), updated_at = now()
     WHERE tid = ANY (personalize.profile_traits(p.states));
    PERFORM personalize._regenerate_view();
END $$;

CREATE OR REPLACE FUNCTION register_source(relation regclass,
                                identifiers jsonb,
                                event_time name,
                                event_type text DEFAULT NULL,
                                event_type_column name DEFAULT NULL,
                                fields jsonb DEFAULT '{}',
                                backfill boolean DEFAULT true)
RETURNS integer
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';

CREATE OR REPLACE FUNCTION unregister_source(relation regclass) RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';

CREATE OR REPLACE FUNCTION add_trait(name text, kind text,
                          field text DEFAULT NULL,
                          sources regclass[] DEFAULT NULL,
                          event_types text[] DEFAULT NULL,
                          n integer DEFAULT NULL,
                          half_life interval DEFAULT NULL,
                          windows interval[] DEFAULT NULL,
                          gap interval DEFAULT NULL,
                          item_field text DEFAULT NULL,
                          hll_precision integer DEFAULT NULL,
                          backfill boolean DEFAULT true)
RETURNS integer
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';

CREATE OR REPLACE FUNCTION alter_trait(name text,
                            kind text DEFAULT NULL,
                            field text DEFAULT NULL,
                            sources regclass[] DEFAULT NULL,
                            event_types text[] DEFAULT NULL,
                            n integer DEFAULT NULL,
                            half_life interval DEFAULT NULL,
                            windows interval[] DEFAULT NULL,
                            gap interval DEFAULT NULL,
                            item_field text DEFAULT NULL,
                            hll_precision integer DEFAULT NULL,
                            all_sources boolean DEFAULT false,
                            all_event_types boolean DEFAULT false,
                            backfill boolean DEFAULT true)
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';

CREATE OR REPLACE FUNCTION drop_trait(name text) RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';

-- ===========================================================================
-- A source stays a table the stream sees whole
-- ===========================================================================

-- Refuses, at the end of the DDL command, what would make a registered
-- source's rows miss the stream: SET UNLOGGED, or an unlogged or foreign
-- partition (attached, or created as a partition).  SECURITY DEFINER: it
-- runs at every CREATE TABLE and ALTER TABLE in the database, by any role,
-- and must read personalize.sources.
CREATE FUNCTION _source_altered() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src regclass;
BEGIN
    IF pg_catalog.to_regclass('personalize.sources') IS NULL THEN
        RETURN;
    END IF;
    FOR src IN
        SELECT DISTINCT s.relation
          FROM pg_catalog.pg_event_trigger_ddl_commands() c
         CROSS JOIN LATERAL (SELECT c.objid AS rel
                             UNION ALL
                             SELECT a.relid FROM pg_catalog.pg_partition_ancestors(c.objid) a) r
          JOIN personalize.sources s ON s.relation OPERATOR(pg_catalog.=) r.rel
         WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND c.objsubid OPERATOR(pg_catalog.=) 0
    LOOP
        -- (pg_partition_tree() is empty for a table outside any partition tree)
        IF EXISTS (SELECT 1 FROM (SELECT src::pg_catalog.oid AS relid
                                  UNION ALL
                                  SELECT t.relid FROM pg_catalog.pg_partition_tree(src) t) t
                     JOIN pg_catalog.pg_class k ON k.oid OPERATOR(pg_catalog.=) t.relid
                    WHERE k.relpersistence OPERATOR(pg_catalog.=) 'u' OR k.relkind OPERATOR(pg_catalog.=) 'f') THEN
            RAISE EXCEPTION 'cannot make rows of % unlogged or foreign: it is a personalize source', src
                USING ERRCODE = 'object_in_use',
                      DETAIL = 'Rows written there would not be in the WAL, and the stream would never see them.',
                      HINT = 'Unregister the source first with personalize.unregister_source().';
        END IF;
    END LOOP;
END $$;
CREATE EVENT TRIGGER personalize_source_altered ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'CREATE FOREIGN TABLE')
    EXECUTE FUNCTION _source_altered();

-- ===========================================================================
-- The worker's status: how often it failed, and when it tries again
-- ===========================================================================

-- After an error the worker waits before it tries again (1 s, doubling up
-- to personalize.worker_max_backoff): state 'waiting to retry' until
-- retry_at.  restarts counts its exits on an error since the server started.
DROP VIEW worker_status;
DROP FUNCTION _worker_status();
CREATE FUNCTION _worker_status(
    OUT database name, OUT pid integer, OUT state text, OUT paused boolean,
    OUT started_at timestamptz, OUT events_applied bigint, OUT events_per_second double precision,
    OUT transactions bigint, OUT batches bigint, OUT profiles_written bigint,
    OUT merges bigint, OUT refused_links bigint, OUT dead_letters bigint,
    OUT updates_ignored bigint, OUT deletes_ignored bigint, OUT truncates_ignored bigint,
    OUT applied_lsn pg_lsn, OUT decoded_lsn pg_lsn, OUT last_commit_at timestamptz,
    OUT last_applied_at timestamptz, OUT commit_to_apply_ms double precision,
    OUT memory_bytes bigint, OUT last_error text, OUT last_error_at timestamptz,
    OUT restarts bigint, OUT retry_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pz_worker_status'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION _worker_status() IS
    'The streaming workers'' shared-memory figures; personalize.worker_status shows them.';

CREATE VIEW worker_status AS
SELECT w.database, w.pid, w.state, w.paused, w.started_at,
       w.events_applied, round(w.events_per_second::numeric, 1) AS events_per_second,
       w.transactions, w.batches, w.profiles_written, w.merges, w.refused_links, w.dead_letters,
       w.updates_ignored, w.deletes_ignored, w.truncates_ignored,
       w.applied_lsn, w.decoded_lsn,
       CASE WHEN w.decoded_lsn IS NOT NULL
            THEN greatest(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), w.decoded_lsn), 0)::bigint
       END AS lag_bytes,
       round(w.commit_to_apply_ms::numeric, 3) AS lag_ms,
       w.last_commit_at, w.last_applied_at, w.memory_bytes, w.last_error, w.last_error_at,
       w.restarts, w.retry_at
  FROM personalize._worker_status() w;
COMMENT ON VIEW worker_status IS
    'One row per streaming worker: state, events applied and per second, applied and decoded LSN, lag in bytes (WAL flushed but not yet decoded and applied) and in ms (commit to apply, last batch), profiles written, merges, refused links, dead letters, changes that are not events, the last error and when, how often an error stopped the worker (restarts), and when a worker waiting to retry tries again.';
REVOKE ALL ON worker_status FROM PUBLIC;
GRANT SELECT ON worker_status TO personalize_reader, personalize_admin;
REVOKE EXECUTE ON FUNCTION _worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _worker_status() TO personalize_reader, personalize_admin;

COMMENT ON FUNCTION worker_start() IS
    'Resume this database''s worker after worker_stop(): it applies what was committed meanwhile; a worker waiting to retry after an error tries at once.  false if it was not stopped.';
COMMENT ON FUNCTION worker_restart() IS
    'Terminate this database''s worker; the postmaster starts it again at once, and it resumes after the last applied transaction without waiting to retry.';

-- ===========================================================================
-- Every function, aggregate and type a user sees explains itself (\df+, \dT+)
-- ===========================================================================

COMMENT ON FUNCTION recent_state_in(cstring, oid, integer) IS
    'text input of recent_state (its JSON form); validates every field';
COMMENT ON FUNCTION recent_state_out(recent_state) IS
    'text output of recent_state: a JSON object, times in UTC';
COMMENT ON FUNCTION recent_state_recv(internal, oid, integer) IS
    'binary input of recent_state: validates every field';
COMMENT ON FUNCTION recent_state_send(recent_state) IS
    'binary output of recent_state: its flat form';
COMMENT ON FUNCTION state_merge(recent_state, recent_state) IS
    'merge two recent_state values (the N most recent distinct values with their times); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(recent_state, recent_state) IS
    'recent_state values that hold the same state';
COMMENT ON FUNCTION state_ne(recent_state, recent_state) IS
    'recent_state values that hold different states';
COMMENT ON FUNCTION recent_state_final(internal) IS
    'final function of the aggregates that build a recent_state';
COMMENT ON FUNCTION recent_state_merge_trans(internal, recent_state) IS
    'transition function of merge_agg(recent_state)';
COMMENT ON AGGREGATE merge_agg(recent_state) IS
    'merge of the recent_state values of a group (the N most recent distinct values with their times); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION top_state_in(cstring, oid, integer) IS
    'text input of top_state (its JSON form); validates every field';
COMMENT ON FUNCTION top_state_out(top_state) IS
    'text output of top_state: a JSON object, times in UTC';
COMMENT ON FUNCTION top_state_recv(internal, oid, integer) IS
    'binary input of top_state: validates every field';
COMMENT ON FUNCTION top_state_send(top_state) IS
    'binary output of top_state: its flat form';
COMMENT ON FUNCTION state_merge(top_state, top_state) IS
    'merge two top_state values (per-value weights decayed by a half-life, the N heaviest kept); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(top_state, top_state) IS
    'top_state values that hold the same state';
COMMENT ON FUNCTION state_ne(top_state, top_state) IS
    'top_state values that hold different states';
COMMENT ON FUNCTION top_state_final(internal) IS
    'final function of the aggregates that build a top_state';
COMMENT ON FUNCTION top_state_merge_trans(internal, top_state) IS
    'transition function of merge_agg(top_state)';
COMMENT ON AGGREGATE merge_agg(top_state) IS
    'merge of the top_state values of a group (per-value weights decayed by a half-life, the N heaviest kept); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION windowed_state_in(cstring, oid, integer) IS
    'text input of windowed_state (its JSON form); validates every field';
COMMENT ON FUNCTION windowed_state_out(windowed_state) IS
    'text output of windowed_state: a JSON object, times in UTC';
COMMENT ON FUNCTION windowed_state_recv(internal, oid, integer) IS
    'binary input of windowed_state: validates every field';
COMMENT ON FUNCTION windowed_state_send(windowed_state) IS
    'binary output of windowed_state: its flat form';
COMMENT ON FUNCTION state_merge(windowed_state, windowed_state) IS
    'merge two windowed_state values (event counts and sums in time buckets); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(windowed_state, windowed_state) IS
    'windowed_state values that hold the same state';
COMMENT ON FUNCTION state_ne(windowed_state, windowed_state) IS
    'windowed_state values that hold different states';
COMMENT ON FUNCTION windowed_state_final(internal) IS
    'final function of the aggregates that build a windowed_state';
COMMENT ON FUNCTION windowed_state_merge_trans(internal, windowed_state) IS
    'transition function of merge_agg(windowed_state)';
COMMENT ON AGGREGATE merge_agg(windowed_state) IS
    'merge of the windowed_state values of a group (event counts and sums in time buckets); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION distinct_state_in(cstring, oid, integer) IS
    'text input of distinct_state (its JSON form); validates every field';
COMMENT ON FUNCTION distinct_state_out(distinct_state) IS
    'text output of distinct_state: a JSON object, times in UTC';
COMMENT ON FUNCTION distinct_state_recv(internal, oid, integer) IS
    'binary input of distinct_state: validates every field';
COMMENT ON FUNCTION distinct_state_send(distinct_state) IS
    'binary output of distinct_state: its flat form';
COMMENT ON FUNCTION state_merge(distinct_state, distinct_state) IS
    'merge two distinct_state values (a HyperLogLog sketch of distinct values); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(distinct_state, distinct_state) IS
    'distinct_state values that hold the same state';
COMMENT ON FUNCTION state_ne(distinct_state, distinct_state) IS
    'distinct_state values that hold different states';
COMMENT ON FUNCTION distinct_state_final(internal) IS
    'final function of the aggregates that build a distinct_state';
COMMENT ON FUNCTION distinct_state_merge_trans(internal, distinct_state) IS
    'transition function of merge_agg(distinct_state)';
COMMENT ON AGGREGATE merge_agg(distinct_state) IS
    'merge of the distinct_state values of a group (a HyperLogLog sketch of distinct values); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION first_state_in(cstring, oid, integer) IS
    'text input of first_state (its JSON form); validates every field';
COMMENT ON FUNCTION first_state_out(first_state) IS
    'text output of first_state: a JSON object, times in UTC';
COMMENT ON FUNCTION first_state_recv(internal, oid, integer) IS
    'binary input of first_state: validates every field';
COMMENT ON FUNCTION first_state_send(first_state) IS
    'binary output of first_state: its flat form';
COMMENT ON FUNCTION state_merge(first_state, first_state) IS
    'merge two first_state values (the value of the earliest event by event time); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(first_state, first_state) IS
    'first_state values that hold the same state';
COMMENT ON FUNCTION state_ne(first_state, first_state) IS
    'first_state values that hold different states';
COMMENT ON FUNCTION first_state_final(internal) IS
    'final function of the aggregates that build a first_state';
COMMENT ON FUNCTION first_state_merge_trans(internal, first_state) IS
    'transition function of merge_agg(first_state)';
COMMENT ON AGGREGATE merge_agg(first_state) IS
    'merge of the first_state values of a group (the value of the earliest event by event time); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION last_state_in(cstring, oid, integer) IS
    'text input of last_state (its JSON form); validates every field';
COMMENT ON FUNCTION last_state_out(last_state) IS
    'text output of last_state: a JSON object, times in UTC';
COMMENT ON FUNCTION last_state_recv(internal, oid, integer) IS
    'binary input of last_state: validates every field';
COMMENT ON FUNCTION last_state_send(last_state) IS
    'binary output of last_state: its flat form';
COMMENT ON FUNCTION state_merge(last_state, last_state) IS
    'merge two last_state values (the value of the latest event by event time); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(last_state, last_state) IS
    'last_state values that hold the same state';
COMMENT ON FUNCTION state_ne(last_state, last_state) IS
    'last_state values that hold different states';
COMMENT ON FUNCTION last_state_final(internal) IS
    'final function of the aggregates that build a last_state';
COMMENT ON FUNCTION last_state_merge_trans(internal, last_state) IS
    'transition function of merge_agg(last_state)';
COMMENT ON AGGREGATE merge_agg(last_state) IS
    'merge of the last_state values of a group (the value of the latest event by event time); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION session_state_in(cstring, oid, integer) IS
    'text input of session_state (its JSON form); validates every field';
COMMENT ON FUNCTION session_state_out(session_state) IS
    'text output of session_state: a JSON object, times in UTC';
COMMENT ON FUNCTION session_state_recv(internal, oid, integer) IS
    'binary input of session_state: validates every field';
COMMENT ON FUNCTION session_state_send(session_state) IS
    'binary output of session_state: its flat form';
COMMENT ON FUNCTION state_merge(session_state, session_state) IS
    'merge two session_state values (the current session (inactivity gap)); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(session_state, session_state) IS
    'session_state values that hold the same state';
COMMENT ON FUNCTION state_ne(session_state, session_state) IS
    'session_state values that hold different states';
COMMENT ON FUNCTION session_state_final(internal) IS
    'final function of the aggregates that build a session_state';
COMMENT ON FUNCTION session_state_merge_trans(internal, session_state) IS
    'transition function of merge_agg(session_state)';
COMMENT ON AGGREGATE merge_agg(session_state) IS
    'merge of the session_state values of a group (the current session (inactivity gap)); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION trait_state_combine(internal, internal) IS
    'combine function of every trait-state aggregate: merges two partial states (parallel and distributed aggregation)';
COMMENT ON FUNCTION trait_state_serialize(internal) IS
    'serialize function of every trait-state aggregate: a partial state as bytea';
COMMENT ON FUNCTION trait_state_deserialize(bytea, internal) IS
    'deserialize function of every trait-state aggregate';
COMMENT ON FUNCTION recent_agg_trans(internal, text, timestamptz, integer) IS
    'transition function of recent_agg(text, timestamptz, integer)';
COMMENT ON AGGREGATE recent_agg(text, timestamptz, integer) IS
    'the n most recent distinct values of the group, each with its latest time (recent_state); parallel';
COMMENT ON FUNCTION top_agg_trans(internal, text, timestamptz, integer, interval) IS
    'transition function of top_agg(text, timestamptz, integer, interval)';
COMMENT ON AGGREGATE top_agg(text, timestamptz, integer, interval) IS
    'the n values of the group with the most weight, each event weighing 1 and decaying by half every half_life (top_state); parallel';
COMMENT ON FUNCTION top_agg_trans(internal, text, timestamptz, integer, interval, double precision) IS
    'transition function of top_agg(text, timestamptz, integer, interval, double precision)';
COMMENT ON AGGREGATE top_agg(text, timestamptz, integer, interval, double precision) IS
    'the n values of the group with the most weight, each event weighing weight and decaying by half every half_life (top_state); parallel';
COMMENT ON FUNCTION distinct_agg_trans(internal, text) IS
    'transition function of distinct_agg(text)';
COMMENT ON AGGREGATE distinct_agg(text) IS
    'a HyperLogLog sketch of the distinct values of the group, precision 12 (distinct_state); parallel';
COMMENT ON FUNCTION distinct_agg_trans(internal, text, integer) IS
    'transition function of distinct_agg(text, integer)';
COMMENT ON AGGREGATE distinct_agg(text, integer) IS
    'a HyperLogLog sketch of the distinct values of the group at precision p, 4 to 18 (distinct_state); parallel';
COMMENT ON FUNCTION first_agg_trans(internal, text, timestamptz) IS
    'transition function of first_agg(text, timestamptz)';
COMMENT ON AGGREGATE first_agg(text, timestamptz) IS
    'the value of the earliest event of the group by event time, ties broken by the smallest value (first_state); parallel';
COMMENT ON FUNCTION last_agg_trans(internal, text, timestamptz) IS
    'transition function of last_agg(text, timestamptz)';
COMMENT ON AGGREGATE last_agg(text, timestamptz) IS
    'the value of the latest event of the group by event time, ties broken by the largest value (last_state); parallel';
COMMENT ON FUNCTION recent_agg_trans(internal, bigint, timestamptz, integer) IS
    'transition function of recent_agg(bigint, timestamptz, integer)';
COMMENT ON AGGREGATE recent_agg(bigint, timestamptz, integer) IS
    'the n most recent distinct values of the group, each with its latest time (recent_state); parallel';
COMMENT ON FUNCTION top_agg_trans(internal, bigint, timestamptz, integer, interval) IS
    'transition function of top_agg(bigint, timestamptz, integer, interval)';
COMMENT ON AGGREGATE top_agg(bigint, timestamptz, integer, interval) IS
    'the n values of the group with the most weight, each event weighing 1 and decaying by half every half_life (top_state); parallel';
COMMENT ON FUNCTION top_agg_trans(internal, bigint, timestamptz, integer, interval, double precision) IS
    'transition function of top_agg(bigint, timestamptz, integer, interval, double precision)';
COMMENT ON AGGREGATE top_agg(bigint, timestamptz, integer, interval, double precision) IS
    'the n values of the group with the most weight, each event weighing weight and decaying by half every half_life (top_state); parallel';
COMMENT ON FUNCTION distinct_agg_trans(internal, bigint) IS
    'transition function of distinct_agg(bigint)';
COMMENT ON AGGREGATE distinct_agg(bigint) IS
    'a HyperLogLog sketch of the distinct values of the group, precision 12 (distinct_state); parallel';
COMMENT ON FUNCTION distinct_agg_trans(internal, bigint, integer) IS
    'transition function of distinct_agg(bigint, integer)';
COMMENT ON AGGREGATE distinct_agg(bigint, integer) IS
    'a HyperLogLog sketch of the distinct values of the group at precision p, 4 to 18 (distinct_state); parallel';
COMMENT ON FUNCTION first_agg_trans(internal, bigint, timestamptz) IS
    'transition function of first_agg(bigint, timestamptz)';
COMMENT ON AGGREGATE first_agg(bigint, timestamptz) IS
    'the value of the earliest event of the group by event time, ties broken by the smallest value (first_state); parallel';
COMMENT ON FUNCTION last_agg_trans(internal, bigint, timestamptz) IS
    'transition function of last_agg(bigint, timestamptz)';
COMMENT ON AGGREGATE last_agg(bigint, timestamptz) IS
    'the value of the latest event of the group by event time, ties broken by the largest value (last_state); parallel';
COMMENT ON FUNCTION windowed_agg_trans(internal, timestamptz) IS
    'transition function of windowed_agg(timestamptz)';
COMMENT ON AGGREGATE windowed_agg(timestamptz) IS
    'the events of the group counted in time buckets (minutes up to 1 h, hours up to 48 h, days up to 90 d), read over any window later (windowed_state); parallel';
COMMENT ON FUNCTION windowed_agg_trans(internal, timestamptz, double precision) IS
    'transition function of windowed_agg(timestamptz, double precision)';
COMMENT ON AGGREGATE windowed_agg(timestamptz, double precision) IS
    'the events of the group counted and their values summed in time buckets, read over any window later (windowed_state); parallel';
COMMENT ON FUNCTION session_agg_trans(internal, timestamptz, text, text) IS
    'transition function of session_agg(timestamptz, text, text)';
COMMENT ON AGGREGATE session_agg(timestamptz, text, text) IS
    'the latest session of the group (a 30-minute inactivity gap ends one): start, last activity, events, dominant category, last item (session_state); parallel';
COMMENT ON FUNCTION session_agg_trans(internal, timestamptz, text, text, interval) IS
    'transition function of session_agg(timestamptz, text, text, interval)';
COMMENT ON AGGREGATE session_agg(timestamptz, text, text, interval) IS
    'the latest session of the group, gap the inactivity that ends one (session_state); parallel';
COMMENT ON FUNCTION recent_values(recent_state) IS
    'the values, newest first';
COMMENT ON FUNCTION recent_times(recent_state) IS
    'the values latest times, newest first';
COMMENT ON FUNCTION recent_size(recent_state) IS
    'how many values the state holds (at most its n)';
COMMENT ON FUNCTION recent_items(recent_state) IS
    'the values and their latest times as rows, newest first';
COMMENT ON FUNCTION top_values(top_state) IS
    'the values, heaviest first';
COMMENT ON FUNCTION top_values(top_state, integer) IS
    'the k heaviest values, heaviest first';
COMMENT ON FUNCTION top_weights(top_state) IS
    'the values weights as of the latest event, heaviest first';
COMMENT ON FUNCTION top_weights(top_state, timestamptz) IS
    'the values weights decayed to the time at, heaviest first';
COMMENT ON FUNCTION top_items(top_state) IS
    'the values and their weights as rows, heaviest first';
COMMENT ON FUNCTION windowed_count(windowed_state, interval) IS
    'the events in the last span before now() (windows up to 90 days)';
COMMENT ON FUNCTION windowed_count(windowed_state, interval, timestamptz) IS
    'the events in the span before at';
COMMENT ON FUNCTION windowed_sum(windowed_state, interval) IS
    'the sum of the values in the last span before now()';
COMMENT ON FUNCTION windowed_sum(windowed_state, interval, timestamptz) IS
    'the sum of the values in the span before at';
COMMENT ON FUNCTION windowed_total_count(windowed_state) IS
    'every event the state holds';
COMMENT ON FUNCTION windowed_total_sum(windowed_state) IS
    'the sum of every value the state holds';
COMMENT ON FUNCTION windowed_latest(windowed_state) IS
    'the time of the latest event';
COMMENT ON FUNCTION distinct_count(distinct_state) IS
    'the estimated number of distinct values (HyperLogLog; relative error about 1.04/sqrt(2^precision))';
COMMENT ON FUNCTION distinct_precision(distinct_state) IS
    'the sketchs precision (registers: 2^precision)';
COMMENT ON FUNCTION event_value(first_state) IS
    'the value of the earliest event';
COMMENT ON FUNCTION event_time(first_state) IS
    'the time of the earliest event';
COMMENT ON FUNCTION event_value(last_state) IS
    'the value of the latest event';
COMMENT ON FUNCTION event_time(last_state) IS
    'the time of the latest event';
COMMENT ON FUNCTION session_start(session_state) IS
    'when the current session started';
COMMENT ON FUNCTION session_last_activity(session_state) IS
    'the time of the sessions latest event';
COMMENT ON FUNCTION session_events(session_state) IS
    'how many events the session holds';
COMMENT ON FUNCTION session_dominant_category(session_state) IS
    'the category with the most events in the session (ties: the smallest)';
COMMENT ON FUNCTION session_last_item(session_state) IS
    'the item of the sessions latest event';
COMMENT ON FUNCTION session_info(session_state) IS
    'the session as jsonb: start, last activity, duration, events, dominant category, last item';
COMMENT ON FUNCTION session_duration(session_state) IS
    'last activity minus start';
COMMENT ON FUNCTION identity_graph_changed() IS
    'trigger of the identity tables: tells every backends identity cache that the graph or the namespaces changed';
COMMENT ON TYPE source_column IS
    'a column of a source table that holds identifiers of a namespace: forget() deletes the rows whose value is a forgotten identifier';

-- ===========================================================================
-- Privileges
-- ===========================================================================

-- Only superusers and the functions above write the configuration.
REVOKE INSERT, UPDATE, DELETE ON namespaces, sources, source_identifiers, source_fields, traits
    FROM personalize_admin;
REVOKE USAGE ON SEQUENCE sources_id_seq, traits_id_seq FROM personalize_admin;
-- _quiesce locks every source: only the functions that rebuild call it (an
-- admin calling it in an open transaction would hold every writer back)
REVOKE EXECUTE ON FUNCTION _quiesce(integer[], text, boolean) FROM personalize_admin;
REVOKE EXECUTE ON FUNCTION
    _register_source(regclass, jsonb, name, text, name, jsonb, boolean),
    _unregister_source(regclass),
    _add_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean),
    _alter_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean, boolean, boolean),
    _drop_trait(text)
    FROM PUBLIC;
