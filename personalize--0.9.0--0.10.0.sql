-- personalize 0.9.0 -> 0.10.0: Citus distributed tables as sources
-- (docs/scale-out.md, the third increment).  register_source accepts a
-- distributed table on the coordinator (with citus.enable_change_data_capture
-- on, and without backfill); every configuration function sends the
-- configuration to every worker node in its transaction, whose workers
-- stream the inserts into their shards; the view is made on each node by
-- the node; the waits on the coordinator wait for every node.
\echo Use "ALTER EXTENSION personalize UPDATE TO '0.10.0'" to load this file. \quit

CREATE OR REPLACE FUNCTION _check_source_kind(relation regclass) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c pg_class;
    citus_kind text;
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
    -- a Citus table's rows are in shards: a distributed table's are
    -- streamed by the nodes that hold them (docs/scale-out.md)
    citus_kind := personalize._citus_table_kind(relation);
    IF citus_kind = 'distributed' AND NOT personalize._citus_is_coordinator() THEN
        RAISE EXCEPTION 'register_source: % is a Citus distributed table, and this is not the coordinator', relation
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'The configuration lives on the coordinator, which sends it to every node.',
                  HINT = 'Register it on the coordinator.';
    END IF;
    IF citus_kind = 'distributed' AND NOT personalize._citus_cdc_everywhere() THEN
        RAISE EXCEPTION 'register_source: % is a Citus distributed table, and citus.enable_change_data_capture is off on a node', relation
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Citus marks its own copies of rows (shard moves, splits, rebalancing) only with it on; unmarked, the stream would count them as new events.',
                  HINT = 'Set citus.enable_change_data_capture = on in postgresql.conf on every node, reload, and register again.';
    END IF;
    IF citus_kind = 'distributed' AND personalize._citus_replicated(relation) THEN
        RAISE EXCEPTION 'register_source: % is a Citus distributed table whose shards have more than one placement', relation
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Every node with a placement of a shard would stream the same inserts: each event would count once per placement.',
                  HINT = 'Distribute it with citus.shard_replication_factor = 1.';
    END IF;
    IF citus_kind IS NOT NULL AND citus_kind <> 'distributed' THEN
        RAISE EXCEPTION 'register_source: % is a Citus % table', relation, citus_kind
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its inserts go to shards on every node or on the coordinator, which this release does not stream: its events would never reach a profile.',
                  HINT = 'Register a plain local table or a distributed table.';
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

CREATE OR REPLACE FUNCTION _register_source(relation regclass,
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
    IF backfill AND personalize._citus_table_kind(relation) = 'distributed' THEN
        RAISE EXCEPTION 'register_source: % is a Citus distributed table, whose rows are not backfilled yet', relation
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its nodes stream the inserts into their shards from the registration on; the rows already there would be read through the coordinator into its own profiles.',
                  HINT = 'Register it with backfill => false (docs/scale-out.md).';
    END IF;
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

CREATE OR REPLACE FUNCTION _regenerate_view() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    coldefs text;
    spec text;
    c record;
    dup text;
    ddl text;
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
    -- each Citus node makes its own view: the coordinator's must not replace theirs
    ddl := current_setting('citus.enable_ddl_propagation', true);
    IF ddl IS NOT NULL THEN
        PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
    END IF;
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
    -- a trait an audience reads cannot go or change its columns' types
    IF ddl IS NOT NULL THEN
        PERFORM set_config('citus.enable_ddl_propagation', ddl, true);
    END IF;
    PERFORM personalize._audiences_check_all();
    PERFORM personalize._audiences_changed();
END $$;

-- ===========================================================================
-- Citus: the configuration every node streams by (docs/scale-out.md)
-- ===========================================================================

-- Whether this is a Citus cluster's coordinator (its group is 0).
CREATE FUNCTION _citus_is_coordinator() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    coordinator boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT groupid = 0 FROM pg_catalog.pg_dist_local_group' INTO coordinator;
    RETURN coalesce(coordinator, false);
END $$;
COMMENT ON FUNCTION _citus_is_coordinator() IS
    'Whether this node is a Citus cluster''s coordinator (false where Citus is not installed).';

-- The statement that gives a worker node the coordinator's configuration:
-- every namespace and trait, and the sources that are distributed tables
-- (the others are the coordinator's own tables); a trait's named sources
-- keep only those.  Relations, roles and functions go by name: each node
-- has its own oids.  NULL where this is no coordinator.
CREATE FUNCTION _citus_node_config() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dist integer[];
BEGIN
    IF NOT personalize._citus_is_coordinator() THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(array_agg(s.id), '{}') INTO dist
      FROM personalize.sources s
     WHERE personalize._citus_table_kind(s.relation) = 'distributed' AND NOT personalize._citus_replicated(s.relation);
    RETURN format('SELECT personalize._citus_take_config(%L::jsonb)', jsonb_build_object(
        'namespaces', (SELECT coalesce(jsonb_agg(to_jsonb(n) ORDER BY n.id), '[]') FROM personalize.namespaces n),
        'sources', (SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.id), '[]') FROM personalize.sources s
                     WHERE s.id = ANY (dist)),
        'source_identifiers', (SELECT coalesce(jsonb_agg(to_jsonb(i) ORDER BY i.source_id, i.column_name), '[]')
                                 FROM personalize.source_identifiers i WHERE i.source_id = ANY (dist)),
        'source_fields', (SELECT coalesce(jsonb_agg(to_jsonb(f) ORDER BY f.source_id, f.field), '[]')
                            FROM personalize.source_fields f WHERE f.source_id = ANY (dist)),
        'traits', (SELECT coalesce(jsonb_agg(to_jsonb(t) || jsonb_build_object('sources',
                              CASE WHEN t.sources IS NOT NULL
                                   THEN (SELECT coalesce(jsonb_agg(s.relation::text ORDER BY s.id), '[]')
                                           FROM personalize.sources s
                                          WHERE s.id = ANY (dist) AND s.relation = ANY (t.sources)) END)
                              ORDER BY t.id), '[]') FROM personalize.traits t)));
END $$;
COMMENT ON FUNCTION _citus_node_config() IS
    'The statement that gives a worker node the coordinator''s configuration (NULL: not a coordinator).';

-- rows (a JSON array of table's rows) into personalize.<table>, each
-- replacing the row of the same key
CREATE FUNCTION _citus_upsert(tab text, keycols text, rows jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cols text;
    sets text;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('%1$I = excluded.%1$I', a.attname), ', ' ORDER BY a.attnum)
      INTO cols, sets
      FROM pg_attribute a
     WHERE a.attrelid = format('personalize.%I', tab)::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format('INSERT INTO personalize.%1$I (%2$s) OVERRIDING SYSTEM VALUE '
                   'SELECT %2$s FROM jsonb_populate_recordset(NULL::personalize.%1$I, $1) '
                   'ON CONFLICT (%3$s) DO UPDATE SET %4$s', tab, cols, keycols, sets)
      USING rows;
END $$;

-- On a worker node: take the coordinator's configuration (_citus_node_config),
-- in the coordinator's transaction.  What it no longer has goes; the rest is
-- written with the coordinator's ids, so that trait ids, namespace ids and
-- the view's columns are the same on every node.  The view is made here.
CREATE FUNCTION _citus_take_config(config jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    gone text;
BEGIN
    IF personalize._citus_is_coordinator() OR to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
        RAISE EXCEPTION '_citus_take_config: this is not a Citus worker node'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'The coordinator sends its configuration to the nodes itself.';
    END IF;
    DELETE FROM personalize.sources s
     WHERE s.id NOT IN (SELECT (x ->> 'id')::integer FROM jsonb_array_elements(config -> 'sources') x);
    DELETE FROM personalize.traits t
     WHERE t.id NOT IN (SELECT (x ->> 'id')::integer FROM jsonb_array_elements(config -> 'traits') x);
    -- a namespace the coordinator dropped may still hold this node's identifiers
    SELECT n.name INTO gone FROM personalize.namespaces n
     WHERE n.id NOT IN (SELECT (x ->> 'id')::integer FROM jsonb_array_elements(config -> 'namespaces') x)
       AND EXISTS (SELECT 1 FROM personalize.identities i WHERE i.namespace_id = n.id) LIMIT 1;
    IF gone IS NOT NULL THEN
        RAISE EXCEPTION 'identifier namespace "%" still holds identifiers on this node', gone
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Forget them on every node first (personalize.forget()).';
    END IF;
    DELETE FROM personalize.namespaces n
     WHERE n.id NOT IN (SELECT (x ->> 'id')::integer FROM jsonb_array_elements(config -> 'namespaces') x);
    PERFORM personalize._citus_upsert('namespaces', 'id', config -> 'namespaces');
    PERFORM personalize._citus_upsert('sources', 'id', config -> 'sources');
    DELETE FROM personalize.source_identifiers i
     WHERE (i.source_id, i.column_name) NOT IN (SELECT (x ->> 'source_id')::integer, (x ->> 'column_name')::name
                                                  FROM jsonb_array_elements(config -> 'source_identifiers') x);
    PERFORM personalize._citus_upsert('source_identifiers', 'source_id, column_name', config -> 'source_identifiers');
    DELETE FROM personalize.source_fields f
     WHERE (f.source_id, f.field) NOT IN (SELECT (x ->> 'source_id')::integer, x ->> 'field'
                                            FROM jsonb_array_elements(config -> 'source_fields') x);
    PERFORM personalize._citus_upsert('source_fields', 'source_id, field', config -> 'source_fields');
    PERFORM personalize._citus_upsert('traits', 'id', config -> 'traits');
    PERFORM setval(pg_get_serial_sequence('personalize.sources', 'id'),
                   greatest((SELECT max(id) FROM personalize.sources), 1), (SELECT max(id) FROM personalize.sources) IS NOT NULL);
    PERFORM setval(pg_get_serial_sequence('personalize.traits', 'id'),
                   greatest((SELECT max(id) FROM personalize.traits), 1), (SELECT max(id) FROM personalize.traits) IS NOT NULL);
    PERFORM personalize._regenerate_view();
END $$;
COMMENT ON FUNCTION _citus_take_config(jsonb) IS
    'On a Citus worker node: take the configuration the coordinator sends (internal).';

-- Whether every worker node has the source in its configuration (asked as
-- the extension's owner, over Citus's connections).
CREATE FUNCTION _citus_on_every_node(relation regclass) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    everywhere boolean;
BEGIN
    EXECUTE 'SELECT coalesce(bool_and(r.success AND r.result = ''t''), true) FROM pg_catalog.run_command_on_workers($1) r'
       INTO everywhere
      USING format('SELECT EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = to_regclass(%L))', relation::text);
    RETURN everywhere;
END $$;

-- Whether citus.enable_change_data_capture is on here and on every worker
-- node (asked as the extension's owner, over Citus's connections).
CREATE FUNCTION _citus_cdc_everywhere() RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    everywhere boolean;
BEGIN
    IF current_setting('citus.enable_change_data_capture', true) IS DISTINCT FROM 'on' THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT coalesce(bool_and(r.success AND r.result = ''on''), true) FROM pg_catalog.run_command_on_workers($1) r'
       INTO everywhere USING 'SHOW citus.enable_change_data_capture';
    RETURN everywhere;
END $$;

-- Whether a distributed table's shards have more than one placement
-- (statement-based replication): each placement's node would stream them.
CREATE FUNCTION _citus_replicated(relation regclass) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    replicated boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_placement') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p USING (shardid)
                             WHERE s.logicalrelid = $1 GROUP BY s.shardid HAVING count(*) > 1)'
       INTO replicated USING relation;
    RETURN replicated;
END $$;

-- Why no worker streams a registered source's inserts, or NULL.  On a
-- coordinator, a distributed table is streamed by the nodes that hold its
-- shards, once each has it in its configuration; on a node, by the node.
-- SECURITY DEFINER: the nodes are asked as the extension's owner, also for
-- a reader of personalize.unstreamed_sources.
CREATE FUNCTION _citus_unstreamed_reason(relation regclass) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind text := personalize._citus_table_kind(relation);
BEGIN
    IF kind IS NULL OR (kind = 'distributed' AND NOT personalize._citus_is_coordinator()) THEN
        RETURN NULL;
    ELSIF kind <> 'distributed' THEN
        RETURN format('a Citus %s table: its inserts go to shards that no worker streams', kind);
    ELSIF personalize._citus_replicated(relation) THEN
        RETURN 'a Citus distributed table whose shards have more than one placement: each would count its inserts';
    ELSIF NOT personalize._citus_cdc_everywhere() THEN
        RETURN 'a Citus distributed table, and citus.enable_change_data_capture is off on a node: Citus''s own copies of its rows would be counted as events';
    ELSIF NOT personalize._citus_on_every_node(relation) THEN
        RETURN 'a Citus distributed table that not every node has in its configuration (distributed after its registration, or a node added since, or down): call personalize.citus_sync_config()';
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION _citus_unstreamed_reason(regclass) IS
    'Why no worker streams a registered source''s inserts (a Citus table), or NULL.';

-- On a coordinator: every worker node's worker has applied what was
-- committed there before the call (its own wait_for_apply), within timeout.
CREATE FUNCTION _citus_wait_nodes(timeout interval) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    applied boolean;
BEGIN
    IF NOT personalize._citus_is_coordinator()
       OR NOT EXISTS (SELECT 1 FROM personalize.sources s WHERE personalize._citus_table_kind(s.relation) = 'distributed') THEN
        RETURN true;
    END IF;
    EXECUTE 'SELECT coalesce(bool_and(r.success AND r.result = ''t''), true) FROM pg_catalog.run_command_on_workers($1) r'
       INTO applied USING format('SELECT personalize.wait_for_apply(%L)', timeout);
    RETURN applied;
END $$;

CREATE FUNCTION citus_sync_config() RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION citus_sync_config() IS
    'On a Citus coordinator: send the configuration to every worker node again (after create_distributed_table on a registered source, or after adding a node).  Every configuration function sends it by itself.';

CREATE FUNCTION _citus_sync_config() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM personalize._require_admin('send the configuration to the Citus nodes');
    IF NOT personalize._citus_is_coordinator() THEN
        RAISE EXCEPTION 'citus_sync_config: this is not a Citus coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Call it on the coordinator.';
    END IF;
    -- pz_configure sends the configuration once this returns
END $$;

-- Every node's streaming workers: this server's rows of worker_status, then,
-- on a Citus coordinator, each worker node's, asked as the extension's owner
-- over Citus's connections; a node that does not answer is one row of state
-- 'unreachable', with the error as last_error.
CREATE FUNCTION _citus_node_worker_status() RETURNS TABLE (node text, status jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT 'local'::text, to_jsonb(w) FROM personalize.worker_status w;
    IF personalize._citus_is_coordinator() THEN
        RETURN QUERY EXECUTE
            'SELECT r.nodename || '':'' || r.nodeport, x
               FROM pg_catalog.run_command_on_workers($1) r,
                    jsonb_array_elements(CASE WHEN r.success THEN r.result::jsonb
                                              ELSE jsonb_build_array(jsonb_build_object(''state'', ''unreachable'',
                                                                                        ''last_error'', r.result)) END) x'
            USING 'SELECT coalesce(jsonb_agg(to_jsonb(w)), ''[]'') FROM personalize.worker_status w';
    END IF;
END $$;
COMMENT ON FUNCTION _citus_node_worker_status() IS
    'This server''s streaming workers and, on a Citus coordinator, every worker node''s, as JSON (internal: read personalize.node_worker_status).';

CREATE VIEW node_worker_status AS
SELECT s.node, w.*
  FROM personalize._citus_node_worker_status() s,
       jsonb_populate_record(NULL::personalize.worker_status, s.status) w;
COMMENT ON VIEW node_worker_status IS
    'personalize.worker_status of this server (node local) and, on a Citus coordinator, of every worker node (node host:port; state unreachable where a node does not answer).';
REVOKE ALL ON node_worker_status FROM PUBLIC;
GRANT SELECT ON node_worker_status TO personalize_reader, personalize_admin;
REVOKE EXECUTE ON FUNCTION _citus_node_worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _citus_node_worker_status() TO personalize_reader, personalize_admin;

COMMENT ON FUNCTION _citus_upsert(text, text, jsonb) IS
    'Rows given as a JSON array into a configuration table, each replacing the row of the same key (internal).';
COMMENT ON FUNCTION _citus_on_every_node(regclass) IS
    'Whether every Citus worker node has the source in its configuration (internal).';
COMMENT ON FUNCTION _citus_wait_nodes(interval) IS
    'On a Citus coordinator: whether every worker node''s worker applied what was committed there before the call, within timeout (internal).';
COMMENT ON FUNCTION _citus_sync_config() IS
    'The implementation of citus_sync_config() (internal).';
COMMENT ON FUNCTION _citus_cdc_everywhere() IS
    'Whether citus.enable_change_data_capture is on here and on every Citus worker node (internal).';
COMMENT ON FUNCTION _citus_replicated(regclass) IS
    'Whether a Citus distributed table''s shards have more than one placement (internal).';

REVOKE EXECUTE ON FUNCTION _citus_node_config(), _citus_upsert(text, text, jsonb), _citus_take_config(jsonb),
    _citus_on_every_node(regclass), _citus_wait_nodes(interval), _citus_sync_config(), _citus_cdc_everywhere(),
    _citus_unstreamed_reason(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _citus_unstreamed_reason(regclass) TO personalize_reader, personalize_admin;
REVOKE EXECUTE ON FUNCTION citus_sync_config() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION citus_sync_config() TO personalize_admin;

CREATE OR REPLACE VIEW unstreamed_sources AS
SELECT s.relation, r.reason
  FROM personalize.sources s, personalize._citus_unstreamed_reason(s.relation) r(reason)
 WHERE r.reason IS NOT NULL;
COMMENT ON VIEW unstreamed_sources IS
    'Registered sources whose inserts no worker streams, and why: a Citus reference or local table, or a distributed table that not every node has in its configuration.';
