-- Trust boundaries (docs/security.md): what personalize_admin, personalize_reader
-- and a role with no grants can and cannot do through the extension.  Every
-- attempt that must fail fails with a clear ERROR, and no role gains a right.
\set SHOW_CONTEXT never
SET search_path = personalize, public;
CREATE ROLE pz_mallory;                       -- a hostile administrator
GRANT personalize_admin TO pz_mallory;
CREATE ROLE pz_rita;                          -- a reader
GRANT personalize_reader TO pz_rita;
CREATE ROLE pz_nobody;                        -- no grant at all
CREATE SCHEMA sec;
GRANT USAGE, CREATE ON SCHEMA sec TO pz_mallory;
GRANT USAGE ON SCHEMA sec TO pz_rita, pz_nobody;

-- ---------------------------------------------------------------------------
-- 1. Only personalize_admin changes the configuration
-- ---------------------------------------------------------------------------
SET ROLE pz_nobody;
SELECT create_namespace('sec_a');                                  -- ERROR
SELECT register_source('pg_catalog.pg_class', '{}', 'ts');         -- ERROR: no EXECUTE
SELECT * FROM namespaces;                                          -- ERROR
SELECT * FROM dead_letters;                                        -- ERROR
SELECT * FROM profiles;                                            -- ERROR
SELECT resolve('sec_email', 'x');                                      -- ERROR
SELECT _rebuild(NULL, NULL, NULL);                                 -- ERROR: not PUBLIC's (0.7.0's was)
RESET ROLE;
-- no SECURITY DEFINER function of the extension may be run by PUBLIC, but
-- the triggers' (PL/pgSQL runs them only as triggers)
SELECT p.oid::regprocedure AS public_security_definer
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'personalize')
   AND p.prosecdef AND has_function_privilege('public', p.oid, 'EXECUTE')
   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
 ORDER BY 1::text;
SET ROLE pz_rita;
SELECT create_namespace('sec_a');                                  -- ERROR
SELECT block_value('email', 'x@y.z');                              -- ERROR
SELECT add_trait('sec_n', 'count');                                -- ERROR: no EXECUTE
SELECT count(*) >= 0 AS reader_reads_the_configuration FROM namespaces;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- 2. The configuration tables are written through the functions only
-- ---------------------------------------------------------------------------
SET ROLE pz_mallory;
INSERT INTO namespaces (id, name, owner) VALUES (99, 'sec_x', 'pz_mallory');   -- ERROR
UPDATE namespaces SET normalizer = 'pg_catalog.int4recv(internal)';             -- ERROR
DELETE FROM traits;                                                             -- ERROR
INSERT INTO sources (relation, event_time_column, owner) VALUES ('namespaces', 'created_at', 'postgres'); -- ERROR
UPDATE source_identifiers SET column_name = 'x';                                -- ERROR
DELETE FROM source_fields;                                                      -- ERROR
-- the implementations behind the functions are not for callers
SELECT _register_source('namespaces', '{"name": "email"}', 'created_at', NULL, NULL, '{}', false); -- ERROR
SELECT _drop_trait('x');                                                        -- ERROR
RESET ROLE;

-- ---------------------------------------------------------------------------
-- 3. A normalizer runs as the role that created its namespace, restricted
-- ---------------------------------------------------------------------------
CREATE FUNCTION sec.secret_norm(value text) RETURNS text IMMUTABLE LANGUAGE sql RETURN lower(value);
REVOKE EXECUTE ON FUNCTION sec.secret_norm(text) FROM PUBLIC;
SET ROLE pz_mallory;
-- a function the admin may not execute cannot become a normalizer
SELECT create_namespace('sec_secret', 0, NULL, 'sec.secret_norm(text)');        -- ERROR
-- the classic attempt: an IMMUTABLE normalizer that performs a VOLATILE
-- function which makes its author a superuser, and other things a
-- restricted operation may not do; it notes who ran it and what happened
CREATE TABLE sec.seen (who name, attempt text, outcome text);
CREATE FUNCTION sec.attempt(what text, stmt text) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    EXECUTE stmt;
    INSERT INTO sec.seen VALUES (current_user, what, 'succeeded');
EXCEPTION WHEN others THEN
    INSERT INTO sec.seen VALUES (current_user, what, SQLERRM);
END $$;
CREATE FUNCTION sec.evil_norm(value text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    IF value = 'escalate' THEN
        PERFORM sec.attempt('superuser', 'ALTER ROLE pz_mallory SUPERUSER');
        PERFORM sec.attempt('set role', 'SET ROLE postgres');
        PERFORM sec.attempt('configure', $q$SELECT personalize.create_namespace('sec_inner')$q$);
        PERFORM sec.attempt('read', 'SELECT pg_catalog.pg_read_file(''postgresql.conf'')');
    END IF;
    RETURN lower(value);
END $$;
SELECT create_namespace('sec_handle', 0, NULL, 'sec.evil_norm(text)');
RESET ROLE;
SELECT owner FROM namespaces WHERE name = 'sec_handle';
-- a superuser resolves through it: the normalizer still runs as pz_mallory
SELECT identify('sec_handle', 'escalate') IS NOT NULL AS identified;
SELECT who, attempt, outcome FROM sec.seen ORDER BY attempt;
SELECT rolsuper AS mallory_is_superuser FROM pg_roles WHERE rolname = 'pz_mallory';
SELECT count(*) AS inner_namespaces FROM namespaces WHERE name = 'sec_inner';
SELECT current_user AS back_as;
-- revoking EXECUTE from the owner stops the namespace at once
GRANT EXECUTE ON FUNCTION sec.secret_norm(text) TO pz_mallory;
SET ROLE pz_mallory;
SELECT create_namespace('sec_granted', 0, NULL, 'sec.secret_norm(text)');
RESET ROLE;
SELECT identify('sec_granted', 'G') IS NOT NULL AS identified;
REVOKE EXECUTE ON FUNCTION sec.secret_norm(text) FROM pz_mallory;
SELECT resolve('sec_granted', 'G');                                             -- ERROR
GRANT EXECUTE ON FUNCTION sec.secret_norm(text) TO pz_mallory;
SELECT resolve('sec_granted', 'G') IS NOT NULL AS resolves_again;

-- a caller's search_path does not reach into a normalizer: its unqualified
-- names resolve as if search_path were pg_catalog, pg_temp
CREATE SCHEMA rdr;
CREATE FUNCTION rdr.lower(text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'hijacked, running as %', current_user; RETURN 'x'; END $$;
SET ROLE pz_mallory;
CREATE FUNCTION sec.plain_norm(text) RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT lower(btrim($1)) $$;
SELECT create_namespace('sec_plain', 0, NULL, 'sec.plain_norm(text)');
RESET ROLE;
SET search_path = rdr, personalize, pg_catalog;
SELECT identify('sec_plain', ' Plain ') = resolve('sec_plain', 'plain') AS not_hijacked;
SET search_path = personalize, public;
DROP SCHEMA rdr CASCADE;

-- ---------------------------------------------------------------------------
-- 4. Invalid configuration rows (restored, edited by a superuser) are
--    refused where they are used, never a crash
-- ---------------------------------------------------------------------------
SELECT create_namespace('sec_crash');
SELECT create_namespace('sec_fine', 0, NULL, 'personalize.normalize_email(text)');
UPDATE namespaces SET normalizer = 'pg_catalog.int4recv(internal)' WHERE name = 'sec_crash';
SELECT resolve('sec_crash', 'x');                                               -- ERROR, no crash
SELECT identify('sec_crash', 'x');                                              -- ERROR
SELECT normalize_identifier('sec_crash', 'x');                                  -- ERROR
UPDATE namespaces SET normalizer = 'pg_catalog.upper(text)', owner = '4000000000' WHERE name = 'sec_crash';
SELECT identify('sec_crash', 'x');                                              -- ERROR: owner gone
UPDATE namespaces SET normalizer = 'sec.secret_norm(text)', owner = 'pz_mallory' WHERE name = 'sec_crash';
SELECT identify('sec_crash', 'x');                                              -- ERROR: no EXECUTE
SELECT identify('sec_fine', ' A@Example.com ') = resolve('sec_fine', 'a@example.com') AS others_work;
SELECT count(*) AS server_still_up FROM pg_stat_activity WHERE pid = pg_backend_pid();

-- ---------------------------------------------------------------------------
-- 5. Reading through the extension needs the right to read
-- ---------------------------------------------------------------------------
SELECT create_namespace('sec_email', 0, NULL, 'personalize.normalize_email(text)');
CREATE TABLE sec.hidden (email text, secret text, ts timestamptz);
CREATE TABLE sec.partly (email text, ts timestamptz, price numeric, secret text);
GRANT SELECT (email, ts, price) ON sec.partly TO pz_mallory;
CREATE TABLE sec.guarded (email text, ts timestamptz);
ALTER TABLE sec.guarded ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_some ON sec.guarded USING (email LIKE 'a%');
GRANT SELECT ON sec.guarded TO pz_mallory;
INSERT INTO sec.hidden VALUES ('h@x.com', 'the secret', now());
INSERT INTO sec.partly VALUES ('p@x.com', now(), 5, 'the secret');
INSERT INTO sec.guarded VALUES ('a@x.com', now()), ('b@x.com', now());
SET ROLE pz_mallory;
SELECT register_source('sec.hidden', '{"email": "sec_email"}', 'ts');               -- ERROR: no SELECT
SELECT register_source('sec.partly', '{"email": "sec_email"}', 'ts',
                       fields => '{"note": "secret"}');                         -- ERROR: column secret
SELECT register_source('sec.guarded', '{"email": "sec_email"}', 'ts');              -- ERROR: row-level security
SELECT register_source('sec.partly', '{"email": "sec_email"}', 'ts', fields => '{"amount": "price"}') > 0 AS registered;
SELECT owner FROM sources WHERE relation = 'sec.partly'::regclass;
SELECT add_trait('sec_secret_seen', 'recent', field => 'secret', sources => '{sec.partly}');  -- ERROR
SELECT add_trait('sec_spent', 'sum', field => 'amount', sources => '{sec.partly}') > 0 AS added;
SELECT alter_trait('sec_spent', field => 'secret');                             -- ERROR
-- its own table, with row-level security it is not subject to (owner)
CREATE TABLE sec.own (email text, ts timestamptz);
ALTER TABLE sec.own ENABLE ROW LEVEL SECURITY;
SELECT register_source('sec.own', '{"email": "sec_email"}', 'ts') > 0 AS owner_registers;
SELECT unregister_source('sec.own');
RESET ROLE;
SELECT p.sec_spent FROM personalize.profile_view p WHERE p.profile_id = resolve('sec_email', 'p@x.com');
-- a right revoked after registration: rebuild() leaves the source out, says
-- so in a WARNING and a dead letter that holds none of its values
REVOKE SELECT (price) ON sec.partly FROM pz_mallory;
SELECT rebuild() >= 0 AS rebuilt;
SELECT p.sec_spent FROM personalize.profile_view p WHERE p.profile_id = resolve('sec_email', 'p@x.com');
SELECT source, applied, events, reason, event FROM dead_letters WHERE source = 'sec.partly'::regclass;
GRANT SELECT (price) ON sec.partly TO pz_mallory;
SELECT rebuild() >= 0 AS rebuilt;
SELECT p.sec_spent FROM personalize.profile_view p WHERE p.profile_id = resolve('sec_email', 'p@x.com');

-- ---------------------------------------------------------------------------
-- 6. No user's cast runs, in rebuild() as in the stream
-- ---------------------------------------------------------------------------
CREATE TYPE sec.tier AS ENUM ('bronze', 'gold');
CREATE FUNCTION sec.tier_text(t sec.tier) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION 'a user''s cast ran as %', current_user;
END $$;
CREATE CAST (sec.tier AS text) WITH FUNCTION sec.tier_text(sec.tier);
CREATE TABLE sec.loyalty (email text, tier sec.tier, ts timestamptz);
INSERT INTO sec.loyalty VALUES ('t@x.com', 'gold', '2026-01-01'), ('t@x.com', 'bronze', '2026-01-02');
SELECT register_source('sec.loyalty', '{"email": "sec_email"}', 'ts') > 0 AS registered;
SELECT add_trait('sec_tier', 'last', field => 'tier', sources => '{sec.loyalty}') > 0 AS added;
SELECT p.sec_tier FROM personalize.profile_view p WHERE p.profile_id = resolve('sec_email', 't@x.com');

-- a table's owner who changes its event time column to a type whose cast
-- to timestamptz is their function: rebuild(), which runs as the
-- extension's owner, does not read the source any more (nor call the cast)
CREATE TABLE sec.moody (email text, ts timestamptz);
ALTER TABLE sec.moody OWNER TO pz_mallory;
SET ROLE pz_mallory;
INSERT INTO sec.moody VALUES ('m@x.com', now());
SELECT register_source('sec.moody', '{"email": "sec_email"}', 'ts') > 0 AS registered;
CREATE TYPE sec.mood AS ENUM ('calm');
CREATE FUNCTION sec.mood_time(sec.mood) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM sec.attempt('cast', 'ALTER ROLE pz_mallory SUPERUSER'); RETURN now(); END $$;
CREATE CAST (sec.mood AS timestamptz) WITH FUNCTION sec.mood_time(sec.mood);
ALTER TABLE sec.moody ALTER COLUMN ts TYPE sec.mood USING 'calm';
RESET ROLE;
SELECT rebuild() >= 0 AS rebuilt;
SELECT count(*) AS cast_calls FROM sec.seen WHERE attempt = 'cast';
SELECT rolsuper AS mallory_is_superuser FROM pg_roles WHERE rolname = 'pz_mallory';
SELECT unregister_source('sec.moody');

-- ---------------------------------------------------------------------------
-- 7. Tables that cannot be streamed are refused, with the reason
-- ---------------------------------------------------------------------------
CREATE UNLOGGED TABLE sec.unlogged (email text, ts timestamptz);
SELECT register_source('sec.unlogged', '{"email": "sec_email"}', 'ts');             -- ERROR
CREATE MATERIALIZED VIEW sec.mv AS SELECT 'm@x.com'::text AS email, now() AS ts;
SELECT register_source('sec.mv', '{"email": "sec_email"}', 'ts');                   -- ERROR
CREATE FOREIGN DATA WRAPPER sec_fdw;
CREATE SERVER sec_server FOREIGN DATA WRAPPER sec_fdw;
CREATE FOREIGN TABLE sec.remote (email text, ts timestamptz) SERVER sec_server;
SELECT register_source('sec.remote', '{"email": "sec_email"}', 'ts');               -- ERROR
-- a Citus table is refused too (test/t/015_citus.pl, where Citus is installed);
-- without Citus, no table is one
SELECT _citus_table_kind('sec.remote') IS NULL AS not_a_citus_table,
       _citus_table_kind(NULL) IS NULL AS null_is_no_table;
CREATE TABLE sec.parted (email text, ts timestamptz) PARTITION BY RANGE (ts);
CREATE TABLE sec.parted_2026 PARTITION OF sec.parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE sec.parted_2027 PARTITION OF sec.parted FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')
    PARTITION BY RANGE (ts);
CREATE TABLE sec.parted_2027_h1 PARTITION OF sec.parted_2027 FOR VALUES FROM ('2027-01-01') TO ('2027-07-01');
SELECT register_source('sec.parted_2026', '{"email": "sec_email"}', 'ts');          -- ERROR: a partition
SELECT register_source('sec.parted_2027_h1', '{"email": "sec_email"}', 'ts');       -- ERROR: a partition
CREATE UNLOGGED TABLE sec.parted_2028 (email text, ts timestamptz);
ALTER TABLE sec.parted ATTACH PARTITION sec.parted_2028 FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
SELECT register_source('sec.parted', '{"email": "sec_email"}', 'ts');               -- ERROR: an unlogged partition
ALTER TABLE sec.parted DETACH PARTITION sec.parted_2028;
-- a partition registered by 0.5.0, which allowed it (written here by hand): the
-- parent cannot be registered too
INSERT INTO sources (relation, event_time_column, owner) VALUES ('sec.parted_2026', 'ts', 'postgres');
SELECT register_source('sec.parted', '{"email": "sec_email"}', 'ts');               -- ERROR: counted twice
DELETE FROM sources WHERE relation = 'sec.parted_2026'::regclass;
SELECT register_source('sec.parted', '{"email": "sec_email"}', 'ts') > 0 AS registered;
-- and once registered, nothing makes its rows miss the stream
ALTER TABLE sec.parted ATTACH PARTITION sec.parted_2028 FOR VALUES FROM ('2028-01-01') TO ('2029-01-01'); -- ERROR
CREATE UNLOGGED TABLE sec.parted_2029 PARTITION OF sec.parted FOR VALUES FROM ('2029-01-01') TO ('2030-01-01'); -- ERROR
ALTER TABLE sec.parted_2026 SET UNLOGGED;                                        -- ERROR
SELECT count(*) AS partitions FROM pg_partition_tree('sec.parted');
-- a table's inheritance children are read by neither path
CREATE TABLE sec.base (email text, ts timestamptz);
CREATE TABLE sec.child () INHERITS (sec.base);
INSERT INTO sec.base VALUES ('base@x.com', now());
INSERT INTO sec.child VALUES ('child@x.com', now());
SELECT register_source('sec.base', '{"email": "sec_email"}', 'ts') > 0 AS registered;
SELECT resolve('sec_email', 'base@x.com') IS NOT NULL AS base_row_read,
       resolve('sec_email', 'child@x.com') IS NULL AS child_row_not_read;
ALTER TABLE sec.base SET UNLOGGED;                                               -- ERROR
ALTER TABLE sec.unlogged SET LOGGED;                                             -- not a source: fine

-- ---------------------------------------------------------------------------
-- Clean up: nothing configured by the roles remains, then the roles go
-- ---------------------------------------------------------------------------
SELECT drop_trait('sec_spent'), drop_trait('sec_tier');
SELECT unregister_source(r) FROM unnest('{sec.partly, sec.loyalty, sec.base, sec.parted}'::regclass[]) r;
DELETE FROM dead_letters WHERE source IS NULL OR source::text LIKE 'sec.%';
SELECT count(*) > 0 AS forgotten
  FROM namespaces n JOIN identities i ON i.namespace_id = n.id,
       LATERAL forget(n.name, i.value)
 WHERE n.name LIKE 'sec\_%';
SELECT drop_namespace(n.name) FROM namespaces n WHERE n.name LIKE 'sec\_%' ORDER BY n.id;
DROP SCHEMA sec CASCADE;
DROP SERVER sec_server;
DROP FOREIGN DATA WRAPPER sec_fdw;
DROP ROLE pz_mallory, pz_rita, pz_nobody;
