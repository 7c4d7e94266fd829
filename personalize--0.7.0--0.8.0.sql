-- personalize 0.7.0 -> 0.8.0: Citus tables are refused as sources
-- (docs/scale-out.md); _rebuild is no longer executable by PUBLIC.
--
-- On a Citus cluster, the inserts into a distributed, reference or Citus
-- local table go to its shards, which no personalize worker streams yet:
-- registering one used to succeed, and its events never reached a profile,
-- with no error.  Until streaming them is built (the design's increments),
-- register_source refuses them.
\echo Use "ALTER EXTENSION personalize UPDATE TO '0.8.0'" to load this file. \quit

-- What kind of Citus table a relation is ('distributed', 'reference' or
-- 'local', as citus_tables says), or NULL: not one, or no Citus here.
CREATE FUNCTION _citus_table_kind(relation regclass) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind text;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN NULL;
    END IF;
    -- (Citus's catalog is named only when it exists: EXECUTE)
    EXECUTE 'SELECT CASE WHEN p.partkey IS NOT NULL THEN ''distributed''
                         WHEN p.repmodel = ''t'' THEN ''reference''
                         WHEN p.colocationid = 0 THEN ''local''
                         ELSE ''distributed'' END
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
       INTO kind USING relation;
    RETURN kind;
END $$;
COMMENT ON FUNCTION _citus_table_kind(regclass) IS
    'The kind of Citus table a relation is (distributed, reference, local), or NULL: not one, or Citus is not installed.';

-- A table whose inserts the stream sees as they are, or an ERROR that says
-- why it cannot be a source; 0.8.0: Citus tables are refused.
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
    -- a Citus table's rows are in shards, which no worker streams yet
    citus_kind := personalize._citus_table_kind(relation);
    IF citus_kind IS NOT NULL THEN
        RAISE EXCEPTION 'register_source: % is a Citus % table', relation, citus_kind
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its inserts go to its shards, which this release does not stream: its events would never reach a profile.',
                  HINT = 'Register a plain local table. Streaming Citus tables is designed in personalize''s docs/scale-out.md, not yet built.';
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

-- Registered sources whose inserts no worker streams, and why: today, a
-- table that Citus distributed after its registration (docs/scale-out.md).
-- The waits report them too; monitoring/queries.yaml counts them.
CREATE VIEW unstreamed_sources AS
SELECT s.relation, format('a Citus %s table: its inserts go to shards that no worker streams', k.kind) AS reason
  FROM personalize.sources s, personalize._citus_table_kind(s.relation) k(kind)
 WHERE k.kind IS NOT NULL;
COMMENT ON VIEW unstreamed_sources IS
    'Registered sources whose inserts no worker streams, and why (a table Citus distributed after its registration).';
REVOKE ALL ON unstreamed_sources FROM PUBLIC;
GRANT SELECT ON unstreamed_sources TO personalize_reader, personalize_admin;

-- A source registered by an earlier version on what is a Citus table now
-- is not streamed: say so.
DO $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT src.relation, personalize._citus_table_kind(src.relation) AS kind
               FROM personalize.sources src
              WHERE personalize._citus_table_kind(src.relation) IS NOT NULL LOOP
        RAISE WARNING 'source % is a Citus % table: its inserts are not streamed', s.relation, s.kind
            USING HINT = 'Unregister it with personalize.unregister_source(); to stream it again, make it a plain local table (Citus''s undistribute_table()) and register it again. See docs/scale-out.md.';
    END LOOP;
END $$;

-- 0.7.0 made _rebuild, the SECURITY DEFINER engine behind rebuild() and the
-- backfills, and left it executable by PUBLIC: any role could rewrite every
-- profile as the extension's owner.  It is personalize_admin's, as the
-- engine was in 0.6.0.
REVOKE EXECUTE ON FUNCTION _rebuild(bigint, integer[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _rebuild(bigint, integer[], integer) TO personalize_admin;
