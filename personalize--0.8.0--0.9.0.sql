-- personalize 0.8.0 -> 0.9.0: rebuild() resolves the identifiers new to
-- the graph in memory, in one pass (src/identity_batch.c), with the same
-- profiles, ids, merge log and refused links as identify() called once per
-- event key, which it did before (about 25 µs a key, half of a rebuild into
-- an empty graph); and the trait aggregates get combinable twins, which
-- Citus combines across nodes (src/combinable.c, docs/scale-out.md).
\echo Use "ALTER EXTENSION personalize UPDATE TO '0.9.0'" to load this file. \quit

-- identify(jsonb) for every event key an open cursor returns, in its
-- order: rebuild()'s identity resolution (src/identity_batch.c).
CREATE FUNCTION _identify_keys(keys refcursor) RETURNS bigint
    AS 'MODULE_PATHNAME', 'pz_identify_keys' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION _identify_keys(refcursor) IS
    'identify(jsonb) for every event key (one jsonb column) the open cursor returns, in its order, with the same profiles, ids, merge log and refused links: keys whose identifiers are all new to the graph are resolved in memory (up to maintenance_work_mem) and written together.  Returns the number of keys.';
REVOKE EXECUTE ON FUNCTION _identify_keys(refcursor) FROM PUBLIC;

-- The engine of rebuild() and of the backfills:
--   only_profile: rebuild this profile only (NULL: every profile);
--   trait_ids: replace only these traits' states (NULL: all of them);
--   only_source: fold this source's events into the profiles as they are
--                (a backfill of a new source; NULL: rebuild from every source).
-- Steps (docs/profiles.md): 1. each source's events GROUP BY their
-- identifiers, into partial states per event key, in one statement that may
-- run in parallel; 2. the keys' identifiers, normalized; 3. identify() for
-- keys that hold an identifier new to the graph, in event-time order (in
-- memory, by _identify_keys, where they hold only new ones); 4.
-- each key to the profile of its best identifier; 5. the partial states
-- merged per profile; 6. each profile written once.
CREATE OR REPLACE FUNCTION _rebuild_profiles(only_profile bigint, trait_ids integer[], only_source integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src record;
    parts text[] := '{}';
    refused_parts text[] := '{}';
    read_sources integer[] := '{}';
    new_keys refcursor;
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
    --    seen links its identifiers, in the order of first events, as
    --    identify() one key after another would (_identify_keys: keys whose
    --    identifiers are all new are resolved in memory, in one pass).
    --    Identifiers the graph knows are never linked again here, so splits
    --    and refused links stand.
    OPEN new_keys FOR
        SELECT rk.key FROM pg_temp.pz_rebuild_key rk
         WHERE EXISTS (SELECT 1 FROM pg_temp.pz_rebuild_id i
                        WHERE i.key = rk.key
                          AND NOT EXISTS (SELECT 1 FROM personalize.identities x
                                           WHERE x.namespace_id = i.namespace_id AND x.value = i.value))
         ORDER BY rk.t0, rk.key;
    PERFORM personalize._identify_keys(new_keys);
    CLOSE new_keys;
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

-- ===========================================================================
-- Combinable aggregates (src/combinable.c): the trait aggregates in the form
-- Citus combines across nodes.  Each <name>_combinable takes the arguments
-- of <name> and gives the same state; its STYPE is that state type (held
-- as an expanded object while it runs), not internal, so that Citus runs
-- the transition on the workers and combines the partial states, shipped
-- as text, on the coordinator (docs/scale-out.md).
-- ===========================================================================

CREATE FUNCTION _state_combine(recent_state, recent_state) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(recent_state, recent_state) IS
    'The combine function of the combinable aggregates of recent_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(top_state, top_state) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(top_state, top_state) IS
    'The combine function of the combinable aggregates of top_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(windowed_state, windowed_state) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(windowed_state, windowed_state) IS
    'The combine function of the combinable aggregates of windowed_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(distinct_state, distinct_state) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(distinct_state, distinct_state) IS
    'The combine function of the combinable aggregates of distinct_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(first_state, first_state) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(first_state, first_state) IS
    'The combine function of the combinable aggregates of first_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(last_state, last_state) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(last_state, last_state) IS
    'The combine function of the combinable aggregates of last_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(session_state, session_state) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(session_state, session_state) IS
    'The combine function of the combinable aggregates of session_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(metric_state, metric_state) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(metric_state, metric_state) IS
    'The combine function of the combinable aggregates of metric_state: the two states merged (NULL is the empty state).';

CREATE FUNCTION recent_agg_combinable_trans(recent_state, value text, ts timestamptz, n integer) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_recent_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION recent_agg_combinable_trans(recent_state, text, timestamptz, integer) IS 'aggregate support: recent_agg_combinable transition';
CREATE AGGREGATE recent_agg_combinable(value text, ts timestamptz, n integer) (
    SFUNC = recent_agg_combinable_trans, STYPE = recent_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE recent_agg_combinable(text, timestamptz, integer) IS
    'recent_agg in the form Citus combines across nodes (STYPE recent_state): the same arguments, the same state.';
CREATE FUNCTION recent_agg_combinable_trans(recent_state, value bigint, ts timestamptz, n integer) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_recent_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION recent_agg_combinable_trans(recent_state, bigint, timestamptz, integer) IS 'aggregate support: recent_agg_combinable transition';
CREATE AGGREGATE recent_agg_combinable(value bigint, ts timestamptz, n integer) (
    SFUNC = recent_agg_combinable_trans, STYPE = recent_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE recent_agg_combinable(bigint, timestamptz, integer) IS
    'recent_agg in the form Citus combines across nodes (STYPE recent_state): the same arguments, the same state.';
CREATE FUNCTION top_agg_combinable_trans(top_state, value text, ts timestamptz, n integer, half_life interval) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_top_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION top_agg_combinable_trans(top_state, text, timestamptz, integer, interval) IS 'aggregate support: top_agg_combinable transition';
CREATE AGGREGATE top_agg_combinable(value text, ts timestamptz, n integer, half_life interval) (
    SFUNC = top_agg_combinable_trans, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE top_agg_combinable(text, timestamptz, integer, interval) IS
    'top_agg in the form Citus combines across nodes (STYPE top_state): the same arguments, the same state.';
CREATE FUNCTION top_agg_combinable_trans(top_state, value text, ts timestamptz, n integer, half_life interval, weight float8) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_top_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION top_agg_combinable_trans(top_state, text, timestamptz, integer, interval, float8) IS 'aggregate support: top_agg_combinable transition';
CREATE AGGREGATE top_agg_combinable(value text, ts timestamptz, n integer, half_life interval, weight float8) (
    SFUNC = top_agg_combinable_trans, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE top_agg_combinable(text, timestamptz, integer, interval, float8) IS
    'top_agg in the form Citus combines across nodes (STYPE top_state): the same arguments, the same state.';
CREATE FUNCTION top_agg_combinable_trans(top_state, value bigint, ts timestamptz, n integer, half_life interval) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_top_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION top_agg_combinable_trans(top_state, bigint, timestamptz, integer, interval) IS 'aggregate support: top_agg_combinable transition';
CREATE AGGREGATE top_agg_combinable(value bigint, ts timestamptz, n integer, half_life interval) (
    SFUNC = top_agg_combinable_trans, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE top_agg_combinable(bigint, timestamptz, integer, interval) IS
    'top_agg in the form Citus combines across nodes (STYPE top_state): the same arguments, the same state.';
CREATE FUNCTION top_agg_combinable_trans(top_state, value bigint, ts timestamptz, n integer, half_life interval, weight float8) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_top_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION top_agg_combinable_trans(top_state, bigint, timestamptz, integer, interval, float8) IS 'aggregate support: top_agg_combinable transition';
CREATE AGGREGATE top_agg_combinable(value bigint, ts timestamptz, n integer, half_life interval, weight float8) (
    SFUNC = top_agg_combinable_trans, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE top_agg_combinable(bigint, timestamptz, integer, interval, float8) IS
    'top_agg in the form Citus combines across nodes (STYPE top_state): the same arguments, the same state.';
CREATE FUNCTION windowed_agg_combinable_trans(windowed_state, ts timestamptz) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_windowed_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION windowed_agg_combinable_trans(windowed_state, timestamptz) IS 'aggregate support: windowed_agg_combinable transition';
CREATE AGGREGATE windowed_agg_combinable(ts timestamptz) (
    SFUNC = windowed_agg_combinable_trans, STYPE = windowed_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE windowed_agg_combinable(timestamptz) IS
    'windowed_agg in the form Citus combines across nodes (STYPE windowed_state): the same arguments, the same state.';
CREATE FUNCTION windowed_agg_combinable_trans(windowed_state, ts timestamptz, value float8) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_windowed_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION windowed_agg_combinable_trans(windowed_state, timestamptz, float8) IS 'aggregate support: windowed_agg_combinable transition';
CREATE AGGREGATE windowed_agg_combinable(ts timestamptz, value float8) (
    SFUNC = windowed_agg_combinable_trans, STYPE = windowed_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE windowed_agg_combinable(timestamptz, float8) IS
    'windowed_agg in the form Citus combines across nodes (STYPE windowed_state): the same arguments, the same state.';
CREATE FUNCTION distinct_agg_combinable_trans(distinct_state, value text) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_distinct_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION distinct_agg_combinable_trans(distinct_state, text) IS 'aggregate support: distinct_agg_combinable transition';
CREATE AGGREGATE distinct_agg_combinable(value text) (
    SFUNC = distinct_agg_combinable_trans, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE distinct_agg_combinable(text) IS
    'distinct_agg in the form Citus combines across nodes (STYPE distinct_state): the same arguments, the same state.';
CREATE FUNCTION distinct_agg_combinable_trans(distinct_state, value text, p integer) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_distinct_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION distinct_agg_combinable_trans(distinct_state, text, integer) IS 'aggregate support: distinct_agg_combinable transition';
CREATE AGGREGATE distinct_agg_combinable(value text, p integer) (
    SFUNC = distinct_agg_combinable_trans, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE distinct_agg_combinable(text, integer) IS
    'distinct_agg in the form Citus combines across nodes (STYPE distinct_state): the same arguments, the same state.';
CREATE FUNCTION distinct_agg_combinable_trans(distinct_state, value bigint) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_distinct_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION distinct_agg_combinable_trans(distinct_state, bigint) IS 'aggregate support: distinct_agg_combinable transition';
CREATE AGGREGATE distinct_agg_combinable(value bigint) (
    SFUNC = distinct_agg_combinable_trans, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE distinct_agg_combinable(bigint) IS
    'distinct_agg in the form Citus combines across nodes (STYPE distinct_state): the same arguments, the same state.';
CREATE FUNCTION distinct_agg_combinable_trans(distinct_state, value bigint, p integer) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_distinct_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION distinct_agg_combinable_trans(distinct_state, bigint, integer) IS 'aggregate support: distinct_agg_combinable transition';
CREATE AGGREGATE distinct_agg_combinable(value bigint, p integer) (
    SFUNC = distinct_agg_combinable_trans, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE distinct_agg_combinable(bigint, integer) IS
    'distinct_agg in the form Citus combines across nodes (STYPE distinct_state): the same arguments, the same state.';
CREATE FUNCTION first_agg_combinable_trans(first_state, value text, ts timestamptz) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_first_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION first_agg_combinable_trans(first_state, text, timestamptz) IS 'aggregate support: first_agg_combinable transition';
CREATE AGGREGATE first_agg_combinable(value text, ts timestamptz) (
    SFUNC = first_agg_combinable_trans, STYPE = first_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE first_agg_combinable(text, timestamptz) IS
    'first_agg in the form Citus combines across nodes (STYPE first_state): the same arguments, the same state.';
CREATE FUNCTION last_agg_combinable_trans(last_state, value text, ts timestamptz) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_last_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION last_agg_combinable_trans(last_state, text, timestamptz) IS 'aggregate support: last_agg_combinable transition';
CREATE AGGREGATE last_agg_combinable(value text, ts timestamptz) (
    SFUNC = last_agg_combinable_trans, STYPE = last_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE last_agg_combinable(text, timestamptz) IS
    'last_agg in the form Citus combines across nodes (STYPE last_state): the same arguments, the same state.';
CREATE FUNCTION first_agg_combinable_trans(first_state, value bigint, ts timestamptz) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_first_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION first_agg_combinable_trans(first_state, bigint, timestamptz) IS 'aggregate support: first_agg_combinable transition';
CREATE AGGREGATE first_agg_combinable(value bigint, ts timestamptz) (
    SFUNC = first_agg_combinable_trans, STYPE = first_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE first_agg_combinable(bigint, timestamptz) IS
    'first_agg in the form Citus combines across nodes (STYPE first_state): the same arguments, the same state.';
CREATE FUNCTION last_agg_combinable_trans(last_state, value bigint, ts timestamptz) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_last_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION last_agg_combinable_trans(last_state, bigint, timestamptz) IS 'aggregate support: last_agg_combinable transition';
CREATE AGGREGATE last_agg_combinable(value bigint, ts timestamptz) (
    SFUNC = last_agg_combinable_trans, STYPE = last_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE last_agg_combinable(bigint, timestamptz) IS
    'last_agg in the form Citus combines across nodes (STYPE last_state): the same arguments, the same state.';
CREATE FUNCTION session_agg_combinable_trans(session_state, ts timestamptz, category text, item text) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_session_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION session_agg_combinable_trans(session_state, timestamptz, text, text) IS 'aggregate support: session_agg_combinable transition';
CREATE AGGREGATE session_agg_combinable(ts timestamptz, category text, item text) (
    SFUNC = session_agg_combinable_trans, STYPE = session_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE session_agg_combinable(timestamptz, text, text) IS
    'session_agg in the form Citus combines across nodes (STYPE session_state): the same arguments, the same state.';
CREATE FUNCTION session_agg_combinable_trans(session_state, ts timestamptz, category text, item text, gap interval) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_session_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION session_agg_combinable_trans(session_state, timestamptz, text, text, interval) IS 'aggregate support: session_agg_combinable transition';
CREATE AGGREGATE session_agg_combinable(ts timestamptz, category text, item text, gap interval) (
    SFUNC = session_agg_combinable_trans, STYPE = session_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE session_agg_combinable(timestamptz, text, text, interval) IS
    'session_agg in the form Citus combines across nodes (STYPE session_state): the same arguments, the same state.';
CREATE FUNCTION metric_agg_combinable_trans(metric_state, op text, value numeric) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_metric_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION metric_agg_combinable_trans(metric_state, text, numeric) IS 'aggregate support: metric_agg_combinable transition';
CREATE AGGREGATE metric_agg_combinable(op text, value numeric) (
    SFUNC = metric_agg_combinable_trans, STYPE = metric_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE metric_agg_combinable(text, numeric) IS
    'metric_agg in the form Citus combines across nodes (STYPE metric_state): the same arguments, the same state.';

CREATE AGGREGATE merge_agg_combinable(recent_state) (
    SFUNC = _state_combine, STYPE = recent_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(recent_state) IS
    'merge_agg(recent_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(top_state) (
    SFUNC = _state_combine, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(top_state) IS
    'merge_agg(top_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(windowed_state) (
    SFUNC = _state_combine, STYPE = windowed_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(windowed_state) IS
    'merge_agg(windowed_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(distinct_state) (
    SFUNC = _state_combine, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(distinct_state) IS
    'merge_agg(distinct_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(first_state) (
    SFUNC = _state_combine, STYPE = first_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(first_state) IS
    'merge_agg(first_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(last_state) (
    SFUNC = _state_combine, STYPE = last_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(last_state) IS
    'merge_agg(last_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(session_state) (
    SFUNC = _state_combine, STYPE = session_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(session_state) IS
    'merge_agg(session_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(metric_state) (
    SFUNC = _state_combine, STYPE = metric_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(metric_state) IS
    'merge_agg(metric_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';

-- drop_audience takes the membership writers' lock before it deletes rows the
-- worker may be writing (it deleted them first, and could deadlock with it)
CREATE OR REPLACE FUNCTION _drop_audience(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    aid integer;
BEGIN
    -- the membership writers' lock first: the worker, holding it, may be
    -- writing this audience's rows, and would wait for ours (a deadlock)
    PERFORM personalize._audiences_changed();
    DELETE FROM personalize.audiences a WHERE a.name = _drop_audience.name RETURNING a.id INTO aid;
    IF aid IS NULL THEN
        RAISE EXCEPTION 'audience % does not exist', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'undefined_object', HINT = 'personalize.audiences lists the audiences.';
    END IF;
    DELETE FROM personalize.audience_memberships m WHERE m.audience_id = aid;
END $$;

-- room on each page for a profile's next version (pages written from now on;
-- VACUUM FULL personalize.profiles rewrites the existing ones)
ALTER TABLE profiles SET (fillfactor = 70);
