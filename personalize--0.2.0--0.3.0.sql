-- personalize 0.2.0 -> 0.3.0: sources, traits and profiles.
--
-- A source is a table the shop already has, registered with a mapping: which
-- columns hold which identifier namespaces, the event-time column, the event
-- type (a column or a constant) and named fields (a column, or a key of a
-- jsonb column).  A trait is a named attribute of every profile, built from
-- the sources' events by one trait-state kind.  Profiles live in
-- personalize.profiles (0.2.0); personalize.profile_view shows them with one
-- typed column per trait and is regenerated whenever traits change.
--
-- Batch rebuild goes through identity resolution (identify() for every
-- identifier the graph has not seen, in event-time order) and then the
-- trait aggregates, GROUP BY profile, in one statement per rebuild that
-- PostgreSQL may run in parallel.  The streaming worker folds events with
-- the same C code the aggregates' transition functions use.
\echo Use "ALTER EXTENSION personalize UPDATE TO '0.3.0'" to load this file. \quit

-- metric_state: exact count, sum, min or max of numeric event values (src/metric.c)
CREATE TYPE metric_state;
CREATE FUNCTION metric_state_in(cstring, oid, integer) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION metric_state_out(metric_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION metric_state_recv(internal, oid, integer) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION metric_state_send(metric_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE metric_state (
    INPUT = metric_state_in, OUTPUT = metric_state_out, RECEIVE = metric_state_recv, SEND = metric_state_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON FUNCTION metric_state_in(cstring, oid, integer) IS 'metric_state text input: {"op": "sum", "count": 3, "value": "12.50"}';
COMMENT ON FUNCTION metric_state_out(metric_state) IS 'metric_state text output';
COMMENT ON FUNCTION metric_state_recv(internal, oid, integer) IS 'metric_state binary input';
COMMENT ON FUNCTION metric_state_send(metric_state) IS 'metric_state binary output';
COMMENT ON TYPE metric_state IS 'personalize trait state: exact count, sum, min or max of numeric event values, with the event count';
CREATE FUNCTION state_merge(metric_state, metric_state) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_state_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION state_merge(metric_state, metric_state) IS 'merge two metric states of one op: counts and sums add, min and max take the smaller and larger; NULL is the empty state';
CREATE OPERATOR || (LEFTARG = metric_state, RIGHTARG = metric_state, FUNCTION = state_merge);
COMMENT ON OPERATOR || (metric_state, metric_state) IS 'merge two metric states (state_merge)';
CREATE FUNCTION state_eq(metric_state, metric_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION state_eq(metric_state, metric_state) IS 'equality of metric states (same op, count and value as written)';
CREATE FUNCTION state_ne(metric_state, metric_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION state_ne(metric_state, metric_state) IS 'inequality of metric states';
CREATE OPERATOR = (LEFTARG = metric_state, RIGHTARG = metric_state, FUNCTION = state_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
COMMENT ON OPERATOR = (metric_state, metric_state) IS 'equality of metric states';
CREATE OPERATOR <> (LEFTARG = metric_state, RIGHTARG = metric_state, FUNCTION = state_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
COMMENT ON OPERATOR <> (metric_state, metric_state) IS 'inequality of metric states';
CREATE FUNCTION metric_state_final(internal) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION metric_state_final(internal) IS 'aggregate support: the metric_state an aggregate built';
CREATE FUNCTION metric_state_merge_trans(internal, metric_state) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_merge_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION metric_state_merge_trans(internal, metric_state) IS 'aggregate support: merge_agg(metric_state) transition';
CREATE AGGREGATE merge_agg(metric_state) (
    SFUNC = metric_state_merge_trans, STYPE = internal, FINALFUNC = metric_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg(metric_state) IS 'merge a column of metric states of one op';

-- metric: count / sum / min / max ------------------------------------------
-- Rows whose value is NULL are skipped (for op count pass any non-NULL
-- value, e.g. the column counted, as to count(x)); op must be the same in
-- every row.  NaN and infinite values are an error.
CREATE FUNCTION metric_agg_trans(internal, op text, value numeric) RETURNS internal
    AS 'MODULE_PATHNAME', 'metric_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION metric_agg_trans(internal, text, numeric) IS 'aggregate support: metric_agg transition';
CREATE AGGREGATE metric_agg(op text, value numeric) (
    SFUNC = metric_agg_trans, STYPE = internal, FINALFUNC = metric_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE metric_agg(text, numeric) IS 'personalize trait: exact count, sum, min or max (op) of the non-NULL values, as a metric_state';
-- Not STRICT: a NULL or 0 count is NULL (no events), a NULL op or a NULL
-- value with events is an error.
CREATE FUNCTION metric_state_make(op text, count bigint, value numeric) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'metric_state_make' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION metric_state_make(text, bigint, numeric) IS 'a metric_state from built-in aggregate results, e.g. metric_state_make(''sum'', count(x), sum(x)); NULL when count is NULL or 0; value is ignored for op count';
CREATE FUNCTION metric_value(metric_state) RETURNS numeric
    AS 'MODULE_PATHNAME', 'metric_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION metric_value(metric_state) IS 'the sum, min or max of the state; for op count, the count';
CREATE FUNCTION metric_count(metric_state) RETURNS bigint
    AS 'MODULE_PATHNAME', 'metric_count' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION metric_count(metric_state) IS 'the number of events folded into the state';
CREATE FUNCTION metric_op(metric_state) RETURNS text
    AS 'MODULE_PATHNAME', 'metric_op' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION metric_op(metric_state) IS 'the op of the state: count, sum, min or max';

-- ===========================================================================
-- Configuration tables
-- ===========================================================================

CREATE TABLE sources (
    id                integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    relation          regclass NOT NULL UNIQUE,
    event_time_column name NOT NULL,
    event_type_column name,
    event_type        text,
    registered_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_type_is_column_or_constant CHECK (num_nonnulls(event_type_column, event_type) <= 1)
);
COMMENT ON TABLE sources IS
    'Registered event tables: event-time column, event type (a column or a constant).  Identifier columns are in source_identifiers, named fields in source_fields.';

CREATE TABLE source_identifiers (
    source_id    integer NOT NULL REFERENCES sources ON DELETE CASCADE,
    column_name  name NOT NULL,
    namespace_id integer NOT NULL,
    PRIMARY KEY (source_id, column_name),
    UNIQUE (source_id, namespace_id)
);
COMMENT ON TABLE source_identifiers IS
    'Which column of a source holds identifiers of which namespace.';

-- A namespace a source maps a column to cannot be dropped.  (A trigger, not
-- a foreign key: tests and tools TRUNCATE namespaces on their own.)
CREATE FUNCTION _namespace_in_use() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    used text;
BEGIN
    SELECT string_agg(s.relation::text || '.' || quote_ident(si.column_name), ', ' ORDER BY s.id) INTO used
      FROM personalize.source_identifiers si JOIN personalize.sources s ON s.id = si.source_id
     WHERE si.namespace_id = OLD.id;
    IF used IS NOT NULL THEN
        RAISE EXCEPTION 'namespace % is used by source columns %', OLD.name, used
            USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Unregister those sources first.';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER namespaces_in_use BEFORE DELETE ON namespaces
    FOR EACH ROW EXECUTE FUNCTION _namespace_in_use();

CREATE TABLE source_fields (
    source_id   integer NOT NULL REFERENCES sources ON DELETE CASCADE,
    field       text NOT NULL,
    column_name name NOT NULL,
    json_key    text,
    PRIMARY KEY (source_id, field),
    CONSTRAINT field_name_is_plain CHECK (field ~ '^[a-z][a-z0-9_]{0,62}$')
);
COMMENT ON TABLE source_fields IS
    'Named event fields of a source: a column, or the key json_key of a jsonb column.  A field a source does not map is the column of that name, if there is one.';

CREATE TABLE traits (
    id          integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL,
    field       text,
    item_field  text,
    sources     regclass[],
    event_types text[],
    n           integer,
    half_life   interval,
    windows     interval[],
    gap         interval,
    hll_precision   integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT trait_name_is_plain CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT trait_kind_is_known CHECK (kind IN ('count', 'sum', 'min', 'max', 'first', 'last',
        'recent', 'top', 'windowed_count', 'windowed_sum', 'distinct', 'session'))
);
COMMENT ON TABLE traits IS
    'Trait definitions: kind, value field, sources (NULL: every source with the field), event types (NULL: all), and the kind''s parameters.  id is the trait''s key in the profile type.';

SELECT pg_catalog.pg_extension_config_dump('sources', '');
SELECT pg_catalog.pg_extension_config_dump('sources_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('source_identifiers', '');
SELECT pg_catalog.pg_extension_config_dump('source_fields', '');
SELECT pg_catalog.pg_extension_config_dump('traits', '');
SELECT pg_catalog.pg_extension_config_dump('traits_id_seq', '');

-- ===========================================================================
-- Helpers (internal; names start with an underscore)
-- ===========================================================================

-- A plain lower-case name, or an ERROR saying which kind of name it is for.
CREATE FUNCTION _check_name(what text, name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid % name %', what, coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use lower-case letters, digits and _, starting with a letter, at most 63 characters.';
    END IF;
END $$;

-- The caller may change personalize's configuration, or an ERROR that says
-- which grant is missing.
CREATE FUNCTION _require_admin(action text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT has_table_privilege('personalize.traits', 'INSERT, UPDATE, DELETE')
       OR NOT has_table_privilege('personalize.profiles', 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied to %', action
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Changing personalize''s configuration needs the personalize_admin role: GRANT personalize_admin TO ' || quote_ident(current_user) || '.';
    END IF;
END $$;

-- A column of a table: its type, or an ERROR that lists the columns there are.
CREATE FUNCTION _column_type(relation regclass, column_name text, what text) RETURNS oid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t oid;
BEGIN
    IF column_name IS NULL THEN
        RAISE EXCEPTION '% column must not be NULL', what USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT a.atttypid INTO t FROM pg_attribute a
     WHERE a.attrelid = relation AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped;
    IF t IS NULL THEN
        RAISE EXCEPTION '% column % does not exist in table %', what, quote_ident(column_name), relation
            USING ERRCODE = 'undefined_column',
                  HINT = 'Its columns are: ' || (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                                  FROM pg_attribute a
                                                 WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped) || '.';
    END IF;
    RETURN t;
END $$;

-- Usable as an identifier or a text value: strings, numbers, uuids, enums.
CREATE FUNCTION _is_scalar_type(t oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT typcategory IN ('S', 'N', 'U', 'E') AND typelem = 0 AND typtype IN ('b', 'e', 'd')
          AND t NOT IN ('json'::regtype, 'jsonb'::regtype)
          FROM pg_type WHERE oid = t);

-- A text value as numeric, NULL if it is not a number (a bad value in a
-- batch rebuild is skipped, never an ERROR that stops the rebuild).
CREATE FUNCTION _numeric_or_null(value text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,4})?\s*$'
            THEN value::numeric END;

-- The SQL expression of a source's field, or NULL if the source has no such
-- field.  Names are quoted here, and only here.
CREATE FUNCTION _field_expr(source_id integer, field text) RETURNS text
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
        RETURN format('(e.%I)::text', f.column_name);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = field
                  AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RETURN format('(e.%I)::text', field);
    END IF;
    RETURN NULL;
END $$;

-- A window's column suffix, as the interval was written: 1 hour -> 1h,
-- 24 hours -> 24h, 7 days -> 7d, 15 minutes -> 15min.
CREATE FUNCTION _window_label(w interval) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (WITH s AS (SELECT extract(epoch FROM w)::bigint AS secs)
        SELECT CASE WHEN w = date_trunc('day', w) THEN (secs / 86400) || 'd'
                    WHEN secs % 3600 = 0 THEN (secs / 3600) || 'h'
                    WHEN secs % 60 = 0 THEN (secs / 60) || 'min'
                    ELSE secs || 's' END FROM s);

-- ===========================================================================
-- Sources
-- ===========================================================================

CREATE FUNCTION register_source(relation regclass,
                                identifiers jsonb,
                                event_time name,
                                event_type text DEFAULT NULL,
                                event_type_column name DEFAULT NULL,
                                fields jsonb DEFAULT '{}',
                                backfill boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sid integer;
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
    IF (SELECT relpersistence FROM pg_class WHERE oid = relation) = 't' THEN
        RAISE EXCEPTION 'register_source: % is a temporary table', relation
            USING ERRCODE = 'wrong_object_type', HINT = 'A source outlives the session: register a permanent or unlogged table.';
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = relation) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'register_source: % is not a table', relation
            USING ERRCODE = 'wrong_object_type', HINT = 'Register the table the events are written to.';
    END IF;
    IF relation::oid IN (SELECT c.objid FROM pg_depend c
                          WHERE c.classid = 'pg_class'::regclass AND c.deptype = 'e'
                            AND c.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')) THEN
        RAISE EXCEPTION 'register_source: % is a table of personalize itself', relation
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = register_source.relation) THEN
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

    INSERT INTO personalize.sources (relation, event_time_column, event_type_column, event_type)
    VALUES (relation, event_time, event_type_column, event_type) RETURNING id INTO sid;

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
    PERFORM personalize._regenerate_view();
    IF backfill THEN
        PERFORM personalize._rebuild(NULL, NULL, sid);
    END IF;
    RETURN sid;
END $$;
COMMENT ON FUNCTION register_source(regclass, jsonb, name, text, name, jsonb, boolean) IS
    'Register an event table: identifiers maps columns to namespaces, event_time names the time column, the event type is a constant or a column, fields name value columns or jsonb keys.  backfill: fold the rows already there into the profiles.';

CREATE FUNCTION unregister_source(relation regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    used text;
BEGIN
    PERFORM personalize._require_admin('unregister a source');
    IF NOT EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = unregister_source.relation) THEN
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
    DELETE FROM personalize.sources s WHERE s.relation = unregister_source.relation;
END $$;
COMMENT ON FUNCTION unregister_source(regclass) IS
    'Stop reading an event table.  Profiles keep what its events contributed until rebuild().';

-- A registered source cannot be dropped (DROP TABLE, DROP SCHEMA ...
-- CASCADE) while it is registered, as a foreign key would refuse: its
-- registration would point at nothing and stop every rebuild.
-- SECURITY DEFINER: it runs at every DROP in the database, by any role,
-- and must read personalize.sources, which PUBLIC cannot.
CREATE FUNCTION _source_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped text;
    n integer;
BEGIN
    -- most drops drop no table; DROP EXTENSION personalize drops the
    -- configuration itself
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_dropped_objects() d
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
                      AND d.objsubid OPERATOR(pg_catalog.=) 0)
       OR pg_catalog.to_regclass('personalize.sources') IS NULL THEN
        RETURN;
    END IF;
    SELECT pg_catalog.string_agg(d.object_identity, ', ' ORDER BY d.object_identity), pg_catalog.count(*)
      INTO dropped, n
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
      JOIN personalize.sources s ON s.relation::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
       AND d.objsubid OPERATOR(pg_catalog.=) 0;
    IF dropped IS NOT NULL THEN
        RAISE EXCEPTION 'cannot drop %: %', dropped,
                        CASE WHEN n = 1 THEN 'it is a personalize source' ELSE 'they are personalize sources' END
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Unregister it first with personalize.unregister_source().';
    END IF;
END $$;
CREATE EVENT TRIGGER personalize_source_dropped ON sql_drop
    EXECUTE FUNCTION _source_dropped();

-- ===========================================================================
-- Traits
-- ===========================================================================

-- Every source a trait reads, with the SQL of its value (NULL when the kind
-- takes none).  A trait without named sources reads every source that has
-- its field; one with named sources must find the field in each.
CREATE FUNCTION _trait_sources(trait_id integer)
RETURNS TABLE (source_id integer, value_expr text, item_expr text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tr personalize.traits;
    s personalize.sources;
    v text;
    it text;
BEGIN
    SELECT * INTO tr FROM personalize.traits WHERE id = trait_id;
    FOR s IN SELECT * FROM personalize.sources ORDER BY id LOOP
        CONTINUE WHEN tr.sources IS NOT NULL AND NOT s.relation = ANY (tr.sources);
        v := CASE WHEN tr.field IS NOT NULL THEN personalize._field_expr(s.id, tr.field) END;
        it := CASE WHEN tr.item_field IS NOT NULL THEN personalize._field_expr(s.id, tr.item_field) END;
        CONTINUE WHEN tr.field IS NOT NULL AND v IS NULL;
        source_id := s.id;
        value_expr := v;
        item_expr := it;
        RETURN NEXT;
    END LOOP;
END $$;

-- ERROR unless every source a trait names has the trait's fields.
CREATE FUNCTION _check_trait_sources(trait_id integer) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tr personalize.traits;
    rel regclass;
BEGIN
    SELECT * INTO tr FROM personalize.traits WHERE id = trait_id;
    IF tr.sources IS NULL THEN
        RETURN;
    END IF;
    FOREACH rel IN ARRAY tr.sources LOOP
        IF NOT EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = rel) THEN
            RAISE EXCEPTION 'trait %: % is not a source', tr.name, rel
                USING ERRCODE = 'undefined_object', HINT = 'Register it with personalize.register_source() first.';
        END IF;
        IF tr.field IS NOT NULL AND personalize._field_expr((SELECT id FROM personalize.sources s WHERE s.relation = rel), tr.field) IS NULL THEN
            RAISE EXCEPTION 'trait %: source % has no field %', tr.name, rel, quote_literal(tr.field)
                USING ERRCODE = 'undefined_column',
                      HINT = 'Name it in the source''s fields, or use a column of that name.';
        END IF;
        IF tr.item_field IS NOT NULL AND personalize._field_expr((SELECT id FROM personalize.sources s WHERE s.relation = rel), tr.item_field) IS NULL THEN
            RAISE EXCEPTION 'trait %: source % has no field %', tr.name, rel, quote_literal(tr.item_field)
                USING ERRCODE = 'undefined_column',
                      HINT = 'Name it in the source''s fields, or use a column of that name.';
        END IF;
    END LOOP;
END $$;

-- Check a trait row's kind and parameters, filling in defaults.
CREATE FUNCTION _check_trait(tr personalize.traits) RETURNS personalize.traits
LANGUAGE plpgsql AS $$
DECLARE
    w interval;
    needs_field boolean;
BEGIN
    PERFORM personalize._check_name('trait', tr.name);
    IF tr.name IN ('profile_id', 'key_namespace', 'key_value', 'first_seen', 'last_seen', 'updated_at') THEN
        RAISE EXCEPTION 'trait name % is taken by a column of personalize.profile_view', tr.name
            USING ERRCODE = 'invalid_name', HINT = 'Choose another name.';
    END IF;
    IF tr.kind IS NULL OR tr.kind NOT IN ('count', 'sum', 'min', 'max', 'first', 'last', 'recent', 'top',
                                          'windowed_count', 'windowed_sum', 'distinct', 'session') THEN
        RAISE EXCEPTION 'trait %: unknown kind %', tr.name, coalesce(quote_literal(tr.kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Kinds: count, sum, min, max, first, last, recent, top, windowed_count, windowed_sum, distinct, session.';
    END IF;
    needs_field := tr.kind NOT IN ('count', 'windowed_count');
    IF needs_field AND tr.field IS NULL THEN
        RAISE EXCEPTION 'trait %: a % trait needs a field', tr.name, tr.kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass field => ''name'' (a source field or column).';
    END IF;
    IF tr.field IS NOT NULL THEN
        PERFORM personalize._check_name('field', tr.field);
    END IF;
    IF tr.item_field IS NOT NULL THEN
        IF tr.kind <> 'session' THEN
            RAISE EXCEPTION 'trait %: item_field is for session traits', tr.name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM personalize._check_name('field', tr.item_field);
    END IF;
    IF tr.event_types IS NOT NULL AND (cardinality(tr.event_types) = 0 OR array_position(tr.event_types, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'trait %: event_types must be NULL (all events) or a non-empty array without NULLs', tr.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.sources IS NOT NULL AND (cardinality(tr.sources) = 0 OR array_position(tr.sources, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'trait %: sources must be NULL (every source with the field) or a non-empty array without NULLs', tr.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- each parameter belongs to some kinds only, and has a default there
    IF tr.n IS NOT NULL AND tr.kind NOT IN ('recent', 'top') THEN
        RAISE EXCEPTION 'trait %: n is for recent and top traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind IN ('recent', 'top') THEN
        tr.n := coalesce(tr.n, 10);
        IF tr.n NOT BETWEEN 1 AND 1000 THEN
            RAISE EXCEPTION 'trait %: n is %', tr.name, tr.n USING ERRCODE = 'invalid_parameter_value', HINT = 'n must be between 1 and 1000.';
        END IF;
    END IF;
    IF tr.half_life IS NOT NULL AND tr.kind <> 'top' THEN
        RAISE EXCEPTION 'trait %: half_life is for top traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind = 'top' THEN
        tr.half_life := coalesce(tr.half_life, interval '30 days');
        IF tr.half_life <= interval '0' THEN
            RAISE EXCEPTION 'trait %: half_life must be positive', tr.name USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF tr.windows IS NOT NULL AND tr.kind NOT IN ('windowed_count', 'windowed_sum') THEN
        RAISE EXCEPTION 'trait %: windows are for windowed_count and windowed_sum traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind IN ('windowed_count', 'windowed_sum') THEN
        tr.windows := coalesce(tr.windows, ARRAY['1 hour', '24 hours', '7 days', '30 days']::interval[]);
        IF cardinality(tr.windows) = 0 OR cardinality(tr.windows) > 16 THEN
            RAISE EXCEPTION 'trait %: give 1 to 16 windows', tr.name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOREACH w IN ARRAY tr.windows LOOP
            IF w IS NULL OR w < interval '1 minute' OR w > interval '90 days'
               OR extract(epoch FROM w)::numeric % 60 <> 0 THEN
                RAISE EXCEPTION 'trait %: window % is not a whole number of minutes between 1 minute and 90 days', tr.name, coalesce(w::text, 'NULL')
                    USING ERRCODE = 'invalid_parameter_value', HINT = 'E.g. windows => ''{1 hour, 24 hours, 7 days, 30 days}''.';
            END IF;
        END LOOP;
        IF (SELECT count(DISTINCT personalize._window_label(x)) FROM unnest(tr.windows) x) <> cardinality(tr.windows) THEN
            RAISE EXCEPTION 'trait %: two windows are the same length', tr.name USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF tr.gap IS NOT NULL AND tr.kind <> 'session' THEN
        RAISE EXCEPTION 'trait %: gap is for session traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind = 'session' THEN
        tr.gap := coalesce(tr.gap, interval '30 minutes');
    END IF;
    IF tr.hll_precision IS NOT NULL AND tr.kind <> 'distinct' THEN
        RAISE EXCEPTION 'trait %: hll_precision is for distinct traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind = 'distinct' THEN
        tr.hll_precision := coalesce(tr.hll_precision, 12);
        IF tr.hll_precision NOT BETWEEN 4 AND 16 THEN
            RAISE EXCEPTION 'trait %: hll_precision is %', tr.name, tr.hll_precision USING ERRCODE = 'invalid_parameter_value', HINT = 'hll_precision must be between 4 and 16.';
        END IF;
    END IF;
    RETURN tr;
END $$;

-- ERROR: there is no trait of this name (the hint lists those there are).
CREATE FUNCTION _unknown_trait(name text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE EXCEPTION 'trait % does not exist', coalesce(quote_literal(name), 'NULL')
        USING ERRCODE = 'undefined_object',
              HINT = coalesce('Traits: ' || (SELECT string_agg(t.name, ', ' ORDER BY t.name) FROM personalize.traits t) || '.',
                              'No trait is defined.');
END $$;

CREATE FUNCTION add_trait(name text, kind text,
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
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
    PERFORM personalize._regenerate_view();
    IF backfill THEN
        PERFORM personalize._rebuild(NULL, ARRAY[tr.id], NULL);
    END IF;
    RETURN tr.id;
END $$;
COMMENT ON FUNCTION add_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean) IS
    'Add a trait: kind (count, sum, min, max, first, last, recent, top, windowed_count, windowed_sum, distinct, session), the field it reads, sources (NULL: every source with the field), event types (NULL: all), and the kind''s parameters.  backfill: build it now for every profile from the sources.';

CREATE FUNCTION alter_trait(name text,
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
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old personalize.traits;
    tr personalize.traits;
BEGIN
    PERFORM personalize._require_admin('alter a trait');
    SELECT * INTO old FROM personalize.traits t WHERE t.name = alter_trait.name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM personalize._unknown_trait(alter_trait.name);
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
    PERFORM personalize._regenerate_view();
    -- the states were built under the old definition: never keep them
    IF backfill THEN
        PERFORM personalize._rebuild(NULL, ARRAY[tr.id], NULL);
    ELSE
        UPDATE personalize.profiles p SET states = personalize.profile_remove(p.states, tr.id), updated_at = now()
         WHERE tr.id = ANY (personalize.profile_traits(p.states));
    END IF;
END $$;
COMMENT ON FUNCTION alter_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean, boolean, boolean) IS
    'Change a trait (NULL: unchanged; all_sources, all_event_types: drop the restriction).  Its states are rebuilt from the sources (backfill => false: removed).';

CREATE FUNCTION drop_trait(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tid integer;
BEGIN
    PERFORM personalize._require_admin('drop a trait');
    DELETE FROM personalize.traits t WHERE t.name = drop_trait.name RETURNING id INTO tid;
    IF tid IS NULL THEN
        PERFORM personalize._unknown_trait(drop_trait.name);
    END IF;
    UPDATE personalize.profiles p SET states = personalize.profile_remove(p.states, tid), updated_at = now()
     WHERE tid = ANY (personalize.profile_traits(p.states));
    PERFORM personalize._regenerate_view();
END $$;
COMMENT ON FUNCTION drop_trait(text) IS 'Drop a trait and remove its state from every profile.';

-- profile_columns(states, spec): every trait column of a profile from one call
CREATE FUNCTION profile_columns(states profile, spec text) RETURNS record
    AS 'MODULE_PATHNAME', 'pz_profile_columns' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION profile_columns(profile, text) IS
    'The columns of a profile named by spec, from one call: call it in FROM with a column definition list, one column per spec entry, e.g. profile_columns(p.states, ''1:recent;2:count;3:wcount:3600000000'') AS c(last_viewed text[], orders bigint, orders_in_1h bigint).  Spec entries, separated by ";": <trait id>:<accessor>, accessors count (bigint, 0 when absent), value (numeric), event_value (text), event_time (timestamptz), recent (text[]), top (text[]), distinct (bigint, 0 when absent), session (jsonb), wcount:<microseconds> (bigint, 0 when absent) and wsum:<microseconds> (double precision, 0 when absent), windows read at now().  A NULL profile reads as empty.';

-- ===========================================================================
-- The profile view: one typed column per trait
-- ===========================================================================

-- The view's columns of one trait, as (column name, profile_columns() spec
-- entry, type, comment).
CREATE FUNCTION _trait_columns(tr personalize.traits)
RETURNS TABLE (column_name text, spec text, column_type text, description text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    w interval;
    what text;
BEGIN
    what := format('%s trait %s', tr.kind, tr.name)
         || CASE WHEN tr.field IS NOT NULL THEN format(' of field %s', tr.field) ELSE '' END
         || CASE WHEN tr.event_types IS NOT NULL THEN format(' over events %s', array_to_string(tr.event_types, ', ')) ELSE '' END;
    CASE tr.kind
    WHEN 'count' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':count', 'bigint', what || ': number of events';
    WHEN 'sum', 'min', 'max' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':value', 'numeric', what;
    WHEN 'first', 'last' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':event_value', 'text', what || ': the value';
        RETURN QUERY SELECT tr.name || '_at', tr.id || ':event_time', 'timestamptz', what || ': its event time';
    WHEN 'recent' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':recent', 'text[]', what || format(': the %s most recent distinct values, newest first', tr.n);
    WHEN 'top' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':top', 'text[]', what || format(': the values by weight decayed with a half-life of %s, heaviest first', tr.half_life);
    WHEN 'distinct' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':distinct', 'bigint', what || ': approximate number of distinct values';
    WHEN 'session' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':session', 'jsonb', what || ': the current session (start, last activity, events, dominant category, last item)';
    WHEN 'windowed_count', 'windowed_sum' THEN
        FOREACH w IN ARRAY tr.windows LOOP
            -- windows are at most 90 days, where extract(epoch) counts a month
            -- as 30 days, as windowed_count() does
            RETURN QUERY SELECT tr.name || '_' || personalize._window_label(w),
                format('%s:%s:%s', tr.id, CASE tr.kind WHEN 'windowed_count' THEN 'wcount' ELSE 'wsum' END,
                       (extract(epoch FROM w) * 1000000)::bigint),
                CASE tr.kind WHEN 'windowed_count' THEN 'bigint' ELSE 'double precision' END,
                what || format(': events in the last %s, counted at read time', personalize._window_label(w));
        END LOOP;
    END CASE;
END $$;

-- Drop and create personalize.profile_view from the traits: CREATE OR
-- REPLACE cannot drop or retype columns.  SECURITY DEFINER, so that any
-- member of personalize_admin may regenerate the view without CREATE on the
-- extension's schema or owning the view; everything it splices is a trait
-- name (checked plain by the traits table), a quoted literal or a number.
CREATE FUNCTION _regenerate_view() RETURNS void
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
         WHERE x.column_name IN ('profile_id', 'key_namespace', 'key_value', 'first_seen', 'last_seen', 'updated_at');
    END IF;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'two columns of personalize.profile_view would be named %', dup
            USING ERRCODE = 'duplicate_column', HINT = 'Rename one of the traits: windowed traits add _1h, _24h, ... and first/last traits add _at.';
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
                   'SELECT p.id AS profile_id, n.name AS key_namespace,\n'
                   '       p.key_value, p.first_seen, p.last_seen, p.updated_at%s\n'
                   '  FROM personalize.profiles p\n'
                   '  LEFT JOIN personalize.namespaces n ON n.id = p.key_namespace_id%s',
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
END $$;

-- ===========================================================================
-- Rebuild
-- ===========================================================================

-- The SQL of one source's events folded per event key: (key, first and
-- last event time, states of the given traits (NULL: all)).  It groups by
-- the raw identifier columns, so the scan is a plain GROUP BY that
-- PostgreSQL may run in parallel, with no join; the key, the event's
-- identifiers as jsonb, is built once per group.
CREATE FUNCTION _source_part_sql(source_id integer, trait_ids integer[])
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
BEGIN
    SELECT * INTO s FROM personalize.sources WHERE id = source_id;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.relation) THEN
        RAISE EXCEPTION 'source % (id %) was dropped', s.relation, s.id
            USING ERRCODE = 'undefined_table', HINT = 'Unregister it with personalize.unregister_source().';
    END IF;
    SELECT string_agg(format('e.%I', si.column_name), ', ' ORDER BY n.name),
           'jsonb_build_object(' || string_agg(format('%L, (e.%I)::text', n.name, si.column_name), ', ' ORDER BY n.name) || ')'
      INTO id_cols, key_expr
      FROM personalize.source_identifiers si JOIN personalize.namespaces n ON n.id = si.namespace_id
     WHERE si.source_id = s.id;
    time_expr := format('(e.%I)::timestamptz', s.event_time_column);
    type_expr := CASE WHEN s.event_type_column IS NOT NULL THEN format('(e.%I)::text', s.event_type_column)
                      ELSE coalesce(quote_literal(s.event_type), 'NULL::text') END;
    FOR tr IN SELECT * FROM personalize.traits t
               WHERE trait_ids IS NULL OR t.id = ANY (trait_ids) ORDER BY t.id LOOP
        SELECT * INTO ts FROM personalize._trait_sources(tr.id) x WHERE x.source_id = s.id;
        CONTINUE WHEN NOT FOUND;
        filt := CASE WHEN tr.event_types IS NOT NULL
                     THEN format(' FILTER (WHERE %s = ANY (%L::text[]))', type_expr, tr.event_types) ELSE '' END;
        agg := CASE tr.kind
            WHEN 'count' THEN format('personalize.metric_state_make(''count'', count(%s)%s, NULL)', coalesce(ts.value_expr, '*'), filt)
            WHEN 'sum' THEN format('personalize.metric_state_make(''sum'', count(personalize._numeric_or_null(%1$s))%2$s, sum(personalize._numeric_or_null(%1$s))%2$s)', ts.value_expr, filt)
            WHEN 'min' THEN format('personalize.metric_state_make(''min'', count(personalize._numeric_or_null(%1$s))%2$s, min(personalize._numeric_or_null(%1$s))%2$s)', ts.value_expr, filt)
            WHEN 'max' THEN format('personalize.metric_state_make(''max'', count(personalize._numeric_or_null(%1$s))%2$s, max(personalize._numeric_or_null(%1$s))%2$s)', ts.value_expr, filt)
            WHEN 'first' THEN format('personalize.first_agg(%s, %s)%s', ts.value_expr, time_expr, filt)
            WHEN 'last' THEN format('personalize.last_agg(%s, %s)%s', ts.value_expr, time_expr, filt)
            WHEN 'recent' THEN format('personalize.recent_agg(%s, %s, %s)%s', ts.value_expr, time_expr, tr.n, filt)
            WHEN 'top' THEN format('personalize.top_agg(%s, %s, %s, %L::interval)%s', ts.value_expr, time_expr, tr.n, tr.half_life, filt)
            WHEN 'windowed_count' THEN
                CASE WHEN ts.value_expr IS NULL THEN format('personalize.windowed_agg(%s)%s', time_expr, filt)
                     ELSE format('personalize.windowed_agg(%s)%s', time_expr,
                                 CASE WHEN filt = '' THEN format(' FILTER (WHERE %s IS NOT NULL)', ts.value_expr)
                                      ELSE format(' FILTER (WHERE %s = ANY (%L::text[]) AND %s IS NOT NULL)', type_expr, tr.event_types, ts.value_expr) END) END
            WHEN 'windowed_sum' THEN format('personalize.windowed_agg(%s, personalize._numeric_or_null(%s)::float8)%s', time_expr, ts.value_expr, filt)
            WHEN 'distinct' THEN format('personalize.distinct_agg(%s, %s)%s', ts.value_expr, tr.hll_precision, filt)
            WHEN 'session' THEN format('personalize.session_agg(%s, %s, %s, %L::interval)%s', time_expr, ts.value_expr,
                                       coalesce(ts.item_expr, 'NULL::text'), tr.gap, filt)
        END;
        states := format(E'personalize.profile_set(%s,\n        %s, %s)', states, tr.id, agg);
    END LOOP;
    RETURN format(E'SELECT %s AS key, min(%s) AS t0, max(%s) AS t1,\n       %s AS states\n'
                  '  FROM %s AS e GROUP BY %s',
                  key_expr, time_expr, time_expr, states, s.relation, id_cols);
END $$;

-- The engine of rebuild() and of the backfills:
--   only_profile: rebuild this profile only (NULL: every profile);
--   trait_ids: replace only these traits' states (NULL: all of them);
--   only_source: fold this source's events into the profiles as they are
--                (a backfill of a new source; NULL: rebuild from every source).
-- Steps (docs/profiles.md): 1. each source's events GROUP BY their
-- identifiers, into partial states per event key, in one statement that may
-- run in parallel; 2. the keys' identifiers, normalized; 3. identify() for
-- keys that hold an identifier new to the graph, in event-time order; 4.
-- each key to the profile of its best identifier; 5. the partial states
-- merged per profile; 6. each profile written once.
CREATE FUNCTION _rebuild(only_profile bigint, trait_ids integer[], only_source integer)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src record;
    parts text[] := '{}';
    kr record;
    n bigint;
    strip text := 'p.states';
    tid integer;
BEGIN
    -- one rebuild at a time: two would each write every profile
    PERFORM pg_advisory_xact_lock(1886610802, 2);
    FOR src IN SELECT s.* FROM personalize.sources s
                WHERE only_source IS NULL OR s.id = only_source ORDER BY s.id LOOP
        parts := parts || personalize._source_part_sql(src.id, trait_ids);
    END LOOP;
    IF cardinality(parts) = 0 THEN
        RETURN 0;
    END IF;

    -- 1. partial states per event key
    EXECUTE E'CREATE TEMP TABLE pz_rebuild_part ON COMMIT DROP AS\n'
            || array_to_string(parts, E'\nUNION ALL\n');
    CREATE TEMP TABLE pz_rebuild_key ON COMMIT DROP AS
    SELECT row_number() OVER () AS key_id, key, t0
      FROM (SELECT key, min(t0) AS t0 FROM pg_temp.pz_rebuild_part GROUP BY key) k;
    -- 2. the keys' usable identifiers, normalized (blocked and unusable ones drop out)
    CREATE TEMP TABLE pz_rebuild_id ON COMMIT DROP AS
    SELECT i.* FROM (
        SELECT k.key_id, k.key, ns.id AS namespace_id, ns.priority, ns.name,
               personalize.normalize_identifier(ns.name, j.value) COLLATE "C" AS value
          FROM pg_temp.pz_rebuild_key k, jsonb_each_text(k.key) j
          JOIN personalize.namespaces ns ON ns.name = j.key
         WHERE j.value IS NOT NULL) i
     WHERE i.value IS NOT NULL;
    ANALYZE pg_temp.pz_rebuild_id;
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

CREATE FUNCTION rebuild() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM personalize._require_admin('rebuild profiles');
    RETURN personalize._rebuild(NULL, NULL, NULL);
END $$;
COMMENT ON FUNCTION rebuild() IS
    'Rebuild every profile''s trait states, first and last seen from the sources: identifiers new to the graph are linked first (in event-time order), then the trait aggregates run per profile.  Returns the number of profiles with events.';

CREATE FUNCTION rebuild(profile_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM personalize._require_admin('rebuild a profile');
    IF profile_id IS NULL THEN
        RAISE EXCEPTION 'rebuild: profile_id must not be NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Call personalize.rebuild() without arguments to rebuild every profile.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM personalize.profiles p WHERE p.id = rebuild.profile_id) THEN
        RAISE EXCEPTION 'rebuild: no profile %', profile_id USING ERRCODE = 'undefined_object',
            HINT = 'Find a profile with personalize.resolve(namespace, value).';
    END IF;
    RETURN personalize._rebuild(profile_id, NULL, NULL);
END $$;
COMMENT ON FUNCTION rebuild(bigint) IS
    'Rebuild one profile from the sources (e.g. after split()).  Reads every source in full.';

-- ===========================================================================
-- Reading profiles
-- ===========================================================================

-- get_profile reads the profile row by its primary key and decodes it with
-- profile_columns()' code, without running a query (src/profile_read.c);
-- the view's columns are cached per backend and reloaded when the view is
-- regenerated.
CREATE FUNCTION get_profile(profile_id bigint) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'pz_get_profile_by_id' LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION get_profile(bigint) IS
    'One profile as jsonb: the columns of personalize.profile_view, windowed traits evaluated against now().  NULL if there is no such profile.';

CREATE FUNCTION get_profile(namespace text, value text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'pz_get_profile' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION get_profile(text, text) IS
    'The profile of an identifier as jsonb (see get_profile(bigint)); NULL if the identifier was never seen.';

CREATE FUNCTION session_intent(namespace text, value text) RETURNS jsonb
LANGUAGE sql STABLE
RETURN (SELECT jsonb_object_agg(t.name, personalize.session_info(personalize.profile_get(p.states, t.id, NULL::personalize.session_state)))
          FROM personalize.profiles p, personalize.traits t
         WHERE p.id = personalize.resolve(namespace, value) AND t.kind = 'session'
           AND personalize.profile_get(p.states, t.id, NULL::personalize.session_state) IS NOT NULL);
COMMENT ON FUNCTION session_intent(text, text) IS
    'The current session of every session trait of an identifier''s profile, as {"trait": session_info}: the intent of an anonymous visitor before login, kept by the known profile after it.';

-- ===========================================================================
-- Privileges
-- ===========================================================================

REVOKE ALL ON sources, source_identifiers, source_fields, traits FROM PUBLIC;
GRANT SELECT ON sources, source_identifiers, source_fields, traits TO personalize_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON sources, source_identifiers, source_fields, traits TO personalize_admin;
GRANT USAGE ON SEQUENCE sources_id_seq, traits_id_seq TO personalize_admin;
-- configuration changes and rebuilds are for personalize_admin: the
-- functions check the table grants themselves, with a hint
REVOKE EXECUTE ON FUNCTION register_source(regclass, jsonb, name, text, name, jsonb, boolean),
    unregister_source(regclass),
    add_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean),
    alter_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean, boolean, boolean),
    drop_trait(text), rebuild(), rebuild(bigint), _rebuild(bigint, integer[], integer),
    _regenerate_view()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION register_source(regclass, jsonb, name, text, name, jsonb, boolean),
    unregister_source(regclass),
    add_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean),
    alter_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean, boolean, boolean),
    drop_trait(text), rebuild(), rebuild(bigint), _rebuild(bigint, integer[], integer),
    _regenerate_view()
    TO personalize_admin;
