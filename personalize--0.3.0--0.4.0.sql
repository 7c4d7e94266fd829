-- personalize 0.3.0 -> 0.4.0: real-time maintenance
--
-- The library ships a logical decoding output plugin (src/decoder.c) and a
-- background worker (src/worker.c) that streams every committed insert into
-- a registered source into its profile.  The plugin reads what to decode
-- from two small tables below, kept in step with the configuration by
-- triggers and marked user_catalog_table so that logical decoding reads
-- them as of each decoded transaction: a row is an event exactly when its
-- transaction commits after the source's registration (docs/streaming.md).

\echo Use "CREATE EXTENSION personalize" to load this file. \quit

-- ===========================================================================
-- What the output plugin decodes
-- ===========================================================================

CREATE TABLE stream_sources (
    source_id     integer PRIMARY KEY,
    relation      regclass NOT NULL,
    time_column   name NOT NULL,
    type_column   name,
    type_constant text,
    id_columns    name[] NOT NULL,
    id_namespaces integer[] NOT NULL
) WITH (user_catalog_table = true);
COMMENT ON TABLE stream_sources IS
    'Derived from sources and source_identifiers for the output plugin, which reads it as of each decoded transaction.  Do not change it: the configuration functions keep it.';

-- One row per (trait, source it reads).  value_column NULL: the kind takes
-- no value (count and windowed_count without a field count every event).
CREATE TABLE stream_traits (
    trait_id      integer NOT NULL,
    source_id     integer NOT NULL,
    kind          text NOT NULL,
    n             integer,
    half_life_us  bigint,
    gap_us        bigint,
    hll_precision integer,
    event_types   text[],
    value_column  name,
    value_key     text,
    item_column   name,
    item_key      text,
    PRIMARY KEY (trait_id, source_id)
) WITH (user_catalog_table = true);
COMMENT ON TABLE stream_traits IS
    'Derived from traits and the sources'' fields for the output plugin: which events feed which trait state, read from which column or jsonb key.  Do not change it: the configuration functions keep it.';

-- (Not dumped: restoring the configuration tables fires the triggers below,
-- which fill them again.)

-- A field of a source: its column, and the jsonb key within it (NULL: the
-- column itself).  As _field_expr: a field the source does not map is the
-- column of that name.
CREATE FUNCTION _field_ref(source_id integer, field text, OUT column_name name, OUT json_key text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rel regclass;
BEGIN
    SELECT sf.column_name, sf.json_key INTO column_name, json_key
      FROM personalize.source_fields sf WHERE sf.source_id = _field_ref.source_id AND sf.field = _field_ref.field;
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT relation INTO rel FROM personalize.sources s WHERE s.id = _field_ref.source_id;
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = field
                  AND a.attnum > 0 AND NOT a.attisdropped) THEN
        column_name := field;
    END IF;
END $$;

-- Rewrite stream_sources and stream_traits from the configuration.  Runs
-- as the extension's owner from statement triggers on the configuration
-- tables, so every change of sources, fields and traits reaches the plugin
-- in the same transaction.
CREATE FUNCTION _stream_refresh() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM personalize.stream_traits;
    DELETE FROM personalize.stream_sources;
    INSERT INTO personalize.stream_sources
    SELECT s.id, s.relation, s.event_time_column, s.event_type_column, s.event_type,
           coalesce(array_agg(si.column_name ORDER BY si.namespace_id) FILTER (WHERE si.column_name IS NOT NULL), '{}'),
           coalesce(array_agg(si.namespace_id ORDER BY si.namespace_id) FILTER (WHERE si.column_name IS NOT NULL), '{}')
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

CREATE TRIGGER stream_refresh AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sources
    FOR EACH STATEMENT EXECUTE FUNCTION _stream_refresh();
CREATE TRIGGER stream_refresh AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON source_identifiers
    FOR EACH STATEMENT EXECUTE FUNCTION _stream_refresh();
CREATE TRIGGER stream_refresh AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON source_fields
    FOR EACH STATEMENT EXECUTE FUNCTION _stream_refresh();
CREATE TRIGGER stream_refresh AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON traits
    FOR EACH STATEMENT EXECUTE FUNCTION _stream_refresh();

-- the configuration an upgraded database already has (a statement trigger
-- fires for an UPDATE of no rows too)
UPDATE sources SET relation = relation;

-- ===========================================================================
-- Dead letters
-- ===========================================================================

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    source      regclass,
    commit_lsn  pg_lsn,
    committed_at timestamptz,
    applied     boolean NOT NULL,
    events      bigint NOT NULL DEFAULT 1,
    reason      text NOT NULL,
    event       jsonb
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
COMMENT ON TABLE dead_letters IS
    'Events the worker could not apply (applied = false: no usable identifier, no event time, a value too long, a mapped column dropped), or applied without one value (applied = true: a value that is not a number for a numeric trait).  event holds the mapped columns as text; events counts the rows one entry stands for.';
SELECT pg_catalog.pg_extension_config_dump('dead_letters', '');

-- ===========================================================================
-- The worker
-- ===========================================================================

CREATE FUNCTION _worker_status(
    OUT database name, OUT pid integer, OUT state text, OUT paused boolean,
    OUT started_at timestamptz, OUT events_applied bigint, OUT events_per_second double precision,
    OUT transactions bigint, OUT batches bigint, OUT profiles_written bigint,
    OUT merges bigint, OUT refused_links bigint, OUT dead_letters bigint,
    OUT updates_ignored bigint, OUT deletes_ignored bigint, OUT truncates_ignored bigint,
    OUT applied_lsn pg_lsn, OUT decoded_lsn pg_lsn, OUT last_commit_at timestamptz,
    OUT last_applied_at timestamptz, OUT commit_to_apply_ms double precision,
    OUT memory_bytes bigint, OUT last_error text, OUT last_error_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pz_worker_status'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

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
       w.last_commit_at, w.last_applied_at, w.memory_bytes, w.last_error, w.last_error_at
  FROM personalize._worker_status() w;
COMMENT ON VIEW worker_status IS
    'One row per streaming worker: state, events applied and per second, applied and decoded LSN, lag in bytes (WAL flushed but not yet decoded and applied) and in ms (commit to apply, last batch), profiles written, merges, refused links, dead letters, changes that are not events, last error.';

CREATE FUNCTION wait_for_apply(timeout interval DEFAULT '60 seconds') RETURNS boolean
AS 'MODULE_PATHNAME', 'pz_wait_for_apply'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION wait_for_apply(interval) IS
    'Wait until this database''s worker has applied every transaction committed before the call; false if timeout passed first.  Call it after committing, not inside the transaction that wrote the events.';

CREATE FUNCTION worker_start() RETURNS boolean
AS 'MODULE_PATHNAME', 'pz_worker_start'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION worker_start() IS
    'Resume this database''s worker after worker_stop(): it applies what was committed meanwhile.  false if it was not stopped.';

CREATE FUNCTION worker_stop() RETURNS boolean
AS 'MODULE_PATHNAME', 'pz_worker_stop'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION worker_stop() IS
    'Pause this database''s worker after its current batch.  The slot keeps the WAL from there until worker_start().  Until a server restart.';

CREATE FUNCTION worker_restart() RETURNS boolean
AS 'MODULE_PATHNAME', 'pz_worker_restart'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION worker_restart() IS
    'Terminate this database''s worker; the postmaster starts it again at once, and it resumes after the last applied transaction.';

-- Used by rebuilds: ERROR unless the worker has applied everything
-- committed so far (or no worker streams this database).
CREATE FUNCTION _stream_wait(what text) RETURNS void
AS 'MODULE_PATHNAME', 'pz_stream_wait'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- Render one message of the output plugin as jsonb (tests, debugging).
CREATE FUNCTION decode_message(bytea) RETURNS jsonb
AS 'MODULE_PATHNAME', 'pz_decode_message'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION decode_message(bytea) IS
    'One message of the personalize output plugin (pg_logical_slot_peek_binary_changes(slot, NULL, NULL)), as jsonb.';

-- ===========================================================================
-- Rebuilds meet the stream at one point
-- ===========================================================================

-- An event needs a time: rows without one are not events (the worker
-- records them as dead letters), so the rebuild skips them too.  (The 0.3.0
-- definition with a WHERE added to the statement it writes.)
DO $do$
DECLARE
    def text;
    old_tail text := $$'  FROM %s AS e GROUP BY %s',
                  key_expr, time_expr, time_expr, states, s.relation, id_cols);$$;
BEGIN
    def := pg_get_functiondef('personalize._source_part_sql(integer, integer[])'::regprocedure);
    IF strpos(def, old_tail) = 0 THEN
        RAISE EXCEPTION 'personalize._source_part_sql is not the 0.3.0 function this upgrade expects';
    END IF;
    EXECUTE replace(def, old_tail,
        $$'  FROM %s AS e WHERE %s IS NOT NULL GROUP BY %s',
                  key_expr, time_expr, time_expr, states, s.relation, time_expr, id_cols);$$);
END $do$;

-- Hold back writers of these sources and (wait_for_stream) wait until the
-- worker has applied everything committed to them: what a rebuild then
-- reads and replaces is exactly what the stream has applied, and every
-- later insert commits after the rebuild and reaches the profiles through
-- the stream.  It runs as the extension's owner: SHARE locks need more than
-- the SELECT an admin has on the sources, and it takes nothing but them.
CREATE FUNCTION _quiesce(source_ids integer[], what text, wait_for_stream boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rels text;
    deadline timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION '%: needs READ COMMITTED isolation, not %', what, current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Its snapshot must be taken after it has locked the sources, or rows committed meanwhile would be missed.';
    END IF;
    SELECT string_agg(s.relation::text, ', ' ORDER BY s.id) INTO rels
      FROM personalize.sources s
     WHERE (source_ids IS NULL OR s.id = ANY (source_ids))
       AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.relation);
    IF rels IS NOT NULL THEN
        -- all at once or none: never wait for one while holding another, so
        -- a writer that writes several sources in one transaction cannot
        -- deadlock with us
        deadline := clock_timestamp()
                    + coalesce(current_setting('personalize.apply_wait_timeout', true), '60s')::interval;
        LOOP
            BEGIN
                EXECUTE format('LOCK TABLE %s IN SHARE MODE NOWAIT', rels);
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                IF clock_timestamp() > deadline THEN
                    RAISE EXCEPTION '%: could not lock the sources % within personalize.apply_wait_timeout', what, rels
                        USING ERRCODE = 'lock_not_available',
                              HINT = 'Long transactions write to them; retry, or raise personalize.apply_wait_timeout.';
                END IF;
                PERFORM pg_sleep(0.002);
            END;
        END LOOP;
    END IF;
    IF wait_for_stream THEN
        PERFORM personalize._stream_wait(what);
    END IF;
END $$;

DO $do$
DECLARE
    def text;
BEGIN
    -- _rebuild: quiesce the sources it reads before its first statement
    -- reads them.  A source backfill merges (nothing is replaced), and its
    -- rows are not yet events: locking its table is enough.
    def := pg_get_functiondef('personalize._rebuild(bigint, integer[], integer)'::regprocedure);
    IF strpos(def, 'PERFORM pg_advisory_xact_lock(1886610802, 2);') = 0 THEN
        RAISE EXCEPTION 'personalize._rebuild is not the 0.3.0 function this upgrade expects';
    END IF;
    def := replace(def, 'PERFORM pg_advisory_xact_lock(1886610802, 2);',
        E'PERFORM pg_advisory_xact_lock(1886610802, 2);\n'
        '    IF only_source IS NULL THEN\n'
        '        PERFORM personalize._quiesce(NULL, ''rebuild'', true);\n'
        '    ELSE\n'
        '        PERFORM personalize._quiesce(ARRAY[only_source], ''register_source'', false);\n'
        '    END IF;');
    EXECUTE def;
END $do$;

CREATE OR REPLACE FUNCTION drop_trait(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tid integer;
BEGIN
    PERFORM personalize._require_admin('drop a trait');
    SELECT t.id INTO tid FROM personalize.traits t WHERE t.name = drop_trait.name;
    IF tid IS NULL THEN
        PERFORM personalize._unknown_trait(drop_trait.name);
    END IF;
    -- events already committed to its sources are applied first: none of
    -- them may bring the state back once it is removed
    PERFORM pg_advisory_xact_lock(1886610802, 2);
    PERFORM personalize._quiesce(ARRAY(SELECT st.source_id FROM personalize.stream_traits st WHERE st.trait_id = tid),
                                 'drop_trait', true);
    DELETE FROM personalize.traits t WHERE t.id = tid;
    UPDATE personalize.profiles p SET states = personalize.profile_remove(p.states, tid), updated_at = now()
     WHERE tid = ANY (personalize.profile_traits(p.states));
    PERFORM personalize._regenerate_view();
END $$;

-- ===========================================================================
-- Privileges
-- ===========================================================================

REVOKE ALL ON stream_sources, stream_traits, dead_letters FROM PUBLIC;
GRANT SELECT ON stream_sources, stream_traits, dead_letters TO personalize_reader;
GRANT SELECT, DELETE ON dead_letters TO personalize_admin;
REVOKE ALL ON worker_status FROM PUBLIC;
GRANT SELECT ON worker_status TO personalize_reader, personalize_admin;
REVOKE EXECUTE ON FUNCTION _worker_status(), worker_start(), worker_stop(), worker_restart(), _stream_wait(text),
    _quiesce(integer[], text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _worker_status() TO personalize_reader, personalize_admin;
GRANT EXECUTE ON FUNCTION worker_start(), worker_stop(), worker_restart(), _stream_wait(text),
    _quiesce(integer[], text, boolean) TO personalize_admin;
