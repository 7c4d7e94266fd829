-- rebuild()'s identity resolution in memory (_identify_keys,
-- src/identity_batch.c) gives what identify() called once per event key
-- gives, in the same order: the same profiles (ids, keys), identities,
-- merge log (rows in order) and refused links (counts, profiles), over
-- random keys with limits, priorities, a normalizer and blocked values:
--   A. into an empty graph;
--   B. into a graph that already holds some of the keys' identifiers (keys
--      that reach into it go through the tables, the batch written first);
--   C. with maintenance_work_mem at its least, so that the batch is written
--      many times on the way;
--   D. a cursor of the wrong shape, a NULL key, and privileges.
-- Everything runs in one transaction and is rolled back.
BEGIN;
SET LOCAL search_path = personalize, public;
SELECT plan(13);

CREATE SCHEMA ibtap;
TRUNCATE namespaces, identities, profiles, merge_log, refused_links;
SELECT create_namespace('ib_cust', 100, 1, 'normalize_trim(text)'),
       create_namespace('ib_mail', 50, 2, 'normalize_email(text)', '{blocked@example.com}'),
       create_namespace('ib_phone', 50, 1),
       create_namespace('ib_cookie', 0) \g /dev/null

-- N random event keys: a cookie always (so that one identifier is usable),
-- and each of the others often, from pools small enough that keys share
-- identifiers (merges, refusals); emails in mixed case and
-- spaces (one address, several spellings) and sometimes the blocked one.
CREATE FUNCTION ibtap.make_keys(n integer, seed float8) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM setseed(seed);
    SET LOCAL client_min_messages = warning;
    DROP TABLE IF EXISTS ibtap.keys;
    CREATE TABLE ibtap.keys (ord integer PRIMARY KEY, key jsonb NOT NULL);
    INSERT INTO ibtap.keys
    SELECT g, jsonb_strip_nulls(jsonb_build_object(
               'ib_cookie', 'c' || floor(random() * n * 0.6)::int,
               'ib_cust', CASE WHEN random() < 0.4 THEN ' ' || floor(random() * n * 0.15)::int END,
               'ib_mail', CASE WHEN random() < 0.03 THEN 'Blocked@Example.com'
                               WHEN random() < 0.5 THEN
                                    CASE WHEN random() < 0.5 THEN 'M' ELSE 'm' END
                                    || floor(random() * n * 0.2)::int || '@example.com ' END,
               'ib_phone', CASE WHEN random() < 0.3 THEN '+1555' || floor(random() * n * 0.1)::int END))
      FROM generate_series(1, n) g;
END $$;

-- the graph as text, without serial ids and times
CREATE FUNCTION ibtap.graph() RETURNS text LANGUAGE sql AS $$
  SELECT concat_ws(E'\n--\n',
    (SELECT string_agg(concat_ws(' ', id, key_namespace_id, key_value, states::text, first_seen,
                                 last_seen, rebuild_pending), E'\n' ORDER BY id) FROM profiles),
    (SELECT string_agg(concat_ws(' ', namespace_id, value, profile_id), E'\n'
                       ORDER BY namespace_id, value) FROM identities),
    (SELECT string_agg(concat_ws(' ', action, from_profile, into_profile, namespace_a, value_a,
                                 namespace_b, value_b), E'\n' ORDER BY id) FROM merge_log),
    (SELECT string_agg(concat_ws(' ', rule, rule_namespace, namespace_a, value_a, namespace_b,
                                 value_b, times, profile_a, profile_b), E'\n'
                       ORDER BY namespace_a, value_a, namespace_b, value_b) FROM refused_links)) $$;

CREATE FUNCTION ibtap.one_by_one() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    FOR k IN SELECT key FROM ibtap.keys ORDER BY ord LOOP
        PERFORM identify(k.key);
    END LOOP;
END $$;

CREATE FUNCTION ibtap.batch() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    c refcursor;
    n bigint;
BEGIN
    OPEN c FOR SELECT key FROM ibtap.keys ORDER BY ord;
    n := _identify_keys(c);
    CLOSE c;
    RETURN n;
END $$;

-- the graph as a starting point, kept and put back
CREATE TABLE ibtap.saved_identities AS SELECT * FROM identities WHERE false;
CREATE TABLE ibtap.saved_profiles AS SELECT * FROM profiles WHERE false;
CREATE TABLE ibtap.saved_log AS SELECT * FROM merge_log WHERE false;
CREATE TABLE ibtap.saved_refused AS SELECT * FROM refused_links WHERE false;
CREATE FUNCTION ibtap.save() RETURNS void LANGUAGE sql AS $$
  TRUNCATE ibtap.saved_identities, ibtap.saved_profiles, ibtap.saved_log, ibtap.saved_refused;
  INSERT INTO ibtap.saved_identities SELECT * FROM identities;
  INSERT INTO ibtap.saved_profiles SELECT * FROM profiles;
  INSERT INTO ibtap.saved_log SELECT * FROM merge_log;
  INSERT INTO ibtap.saved_refused SELECT * FROM refused_links $$;
CREATE FUNCTION ibtap.restore() RETURNS void LANGUAGE sql AS $$
  DELETE FROM identities; DELETE FROM profiles; DELETE FROM merge_log; DELETE FROM refused_links;
  INSERT INTO identities SELECT * FROM ibtap.saved_identities;
  INSERT INTO profiles SELECT * FROM ibtap.saved_profiles;
  INSERT INTO merge_log OVERRIDING SYSTEM VALUE SELECT * FROM ibtap.saved_log;
  INSERT INTO refused_links OVERRIDING SYSTEM VALUE SELECT * FROM ibtap.saved_refused $$;

-- ===== A. into an empty graph ==============================================

SELECT ibtap.make_keys(3000, 0.25);
SELECT ibtap.save();
SELECT ibtap.one_by_one();
CREATE TABLE ibtap.expected AS SELECT ibtap.graph() AS g;
SELECT ibtap.restore();
SELECT is(ibtap.batch(), 3000::bigint, 'A: _identify_keys reads every key');
SELECT is(ibtap.graph(), (SELECT g FROM ibtap.expected),
          'A: into an empty graph, the batch gives the graph identify() after identify() gives');
SELECT ok((SELECT count(*) FROM merge_log WHERE action = 'merge') > 50,
          'A: the keys made merges');
SELECT ok((SELECT count(*) FROM refused_links WHERE rule = 'limit') > 20
          AND (SELECT count(*) FROM refused_links WHERE rule = 'blocked') > 20
          AND (SELECT max(times) FROM refused_links) > 1,
          'A: and refusals by limit and by blocked value, some more than once');

-- ===== B. into a graph that holds some of the identifiers ==================

-- the graph of the first 500 of other keys, then 2500 more of the same pools
SELECT ibtap.make_keys(3000, 0.5);
DELETE FROM identities; DELETE FROM profiles; DELETE FROM merge_log; DELETE FROM refused_links;
DELETE FROM ibtap.keys WHERE ord > 500;
SELECT ibtap.one_by_one();
SELECT ibtap.make_keys(3000, 0.5);
DELETE FROM ibtap.keys WHERE ord <= 500;
SELECT ibtap.save();
SELECT ok((SELECT count(*) FROM identities) > 500, 'B: the graph starts with identifiers');
SELECT ibtap.one_by_one();
TRUNCATE ibtap.expected;
INSERT INTO ibtap.expected SELECT ibtap.graph();
SELECT ibtap.restore();
SELECT is(ibtap.batch(), 2500::bigint, 'B: every key read');
SELECT is(ibtap.graph(), (SELECT g FROM ibtap.expected),
          'B: keys that reach into the graph and keys that do not, mixed: the same graph');

-- ===== C. written many times on the way ====================================

SELECT ibtap.make_keys(20000, 0.75);
DELETE FROM identities; DELETE FROM profiles; DELETE FROM merge_log; DELETE FROM refused_links;
SELECT ibtap.save();
SELECT ibtap.one_by_one();
TRUNCATE ibtap.expected;
INSERT INTO ibtap.expected SELECT ibtap.graph();
SELECT ibtap.restore();
SET LOCAL maintenance_work_mem = '1MB';
SELECT is(ibtap.batch(), 20000::bigint, 'C: every key read, maintenance_work_mem = 1MB');
RESET maintenance_work_mem;
SELECT is(ibtap.graph(), (SELECT g FROM ibtap.expected),
          'C: the batch written several times on the way: the same graph');

-- ===== D. bad input, privileges ============================================

CREATE FUNCTION ibtap.batch_of(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    c refcursor;
BEGIN
    OPEN c FOR EXECUTE q;
    RETURN _identify_keys(c);
END $$;
SELECT throws_ok($$SELECT ibtap.batch_of('SELECT 1')$$, '42804',
                 '_identify_keys: the cursor must return one jsonb column',
                 'D: a cursor of another shape is an ERROR');
SELECT throws_ok($$SELECT ibtap.batch_of('SELECT NULL::jsonb')$$, '22004',
                 'identify: identifiers must not be NULL', 'D: a NULL key is an ERROR, as for identify()');
SELECT throws_ok($$SELECT _identify_keys('no_such_cursor')$$, '34000',
                 '_identify_keys: no cursor "no_such_cursor"', 'D: a cursor that is not open is an ERROR');
SELECT ok(NOT has_function_privilege('personalize_admin', '_identify_keys(refcursor)', 'EXECUTE')
          AND NOT has_function_privilege('public', '_identify_keys(refcursor)', 'EXECUTE'),
          'D: _identify_keys is rebuild()''s alone (no one else may execute it)');

SELECT * FROM finish();
ROLLBACK;
