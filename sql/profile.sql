-- The profile type: every trait state of one shopper, keyed by trait id.
SET search_path = personalize, public;
SET TimeZone = 'UTC';

-- the empty profile
SELECT '{}'::profile AS empty, profile_send('{}') AS flat, profile_traits('{}') AS traits;
SELECT '{}'::profile = '{ }'::profile AS same_empty;

-- one profile holding every kind, built from the aggregates
CREATE TABLE profile_events (shopper int, sku text, cat text, ts timestamptz, amount float8);
INSERT INTO profile_events
SELECT x % 2, 'sku-' || (x % 7), 'cat-' || (x % 3), '2026-01-01'::timestamptz + x * interval '11 min', x % 5
FROM generate_series(1, 60) x;

CREATE TABLE shopper_states AS
SELECT shopper,
       recent_agg(sku, ts, 3) AS recent,
       top_agg(cat, ts, 2, '1 day') AS top,
       windowed_agg(ts, amount) AS windowed,
       distinct_agg(sku, 4) AS dist,
       first_agg(sku, ts) AS first,
       last_agg(cat, ts) AS last,
       session_agg(ts, cat, sku) AS sess
FROM profile_events GROUP BY shopper;

CREATE TABLE shopper_profiles AS
SELECT shopper,
       profile_set(profile_set(profile_set(profile_set(profile_set(profile_set(profile_set(
           '{}', 1, recent), 2, top), 3, windowed), 4, dist), 5, first), 6, last), 7, sess) AS p
FROM shopper_states;

-- the text form's outline: trait id -> kind (the states' own text follows each kind)
SELECT t.key AS trait, k AS kind, length(t.value::text) > 20 AS has_state
FROM shopper_profiles, jsonb_each(p::text::jsonb) t, jsonb_object_keys(t.value) k
WHERE shopper = 0 ORDER BY t.key::int;
SELECT shopper, profile_traits(p) FROM shopper_profiles ORDER BY shopper;

-- each state reads back as it was put
SELECT s.shopper,
       profile_get(p, 1, NULL::recent_state) = recent AS recent,
       profile_get(p, 2, NULL::top_state) = top AS top,
       profile_get(p, 3, NULL::windowed_state) = windowed AS windowed,
       profile_get(p, 4, NULL::distinct_state) = dist AS dist,
       profile_get(p, 5, NULL::first_state) = first AS first,
       profile_get(p, 6, NULL::last_state) = last AS last,
       profile_get(p, 7, NULL::session_state) = sess AS sess
FROM shopper_states s JOIN shopper_profiles USING (shopper) ORDER BY 1;
SELECT recent_values(profile_get(p, 1, NULL::recent_state)), event_value(profile_get(p, 6, NULL::last_state))
FROM shopper_profiles ORDER BY shopper;

-- text round trip, the same text under any TimeZone, DateStyle, IntervalStyle
SELECT shopper, p::text::profile = p AS round_trip FROM shopper_profiles ORDER BY 1;
CREATE TEMP TABLE utc_text AS SELECT shopper, p::text AS t FROM shopper_profiles;
SET TimeZone = 'America/Los_Angeles';
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'sql_standard';
SELECT shopper, p::text = t AS same_text, t::profile = p AS same_value
FROM shopper_profiles JOIN utc_text USING (shopper) ORDER BY 1;
RESET DateStyle;
RESET IntervalStyle;
-- a time without an offset is read in the session's TimeZone (input is STABLE)
SELECT '{"1": {"last": {"value": "gold", "time": "2026-03-01 00:00:00"}}}'::profile;
SET TimeZone = 'UTC';

-- keys are written in trait id order, whatever the input's order
SELECT '{"10": {"first": {"value": "b", "time": "2026-01-02"}}, "9": {"last": {"value": "a", "time": "2026-01-01"}},
         "2147483647": {"last": {"value": "z", "time": "2026-01-01"}}}'::profile;

-- merge: traits on one side are copied, traits on both sides merged by kind
SELECT '{"1": {"last": {"value": "gold", "time": "2026-03-01"}}, "2": {"first": {"value": "a", "time": "2026-01-01"}}}'::profile
    || '{"1": {"last": {"value": "silver", "time": "2026-02-01"}}, "3": {"first": {"value": "b", "time": "2026-01-01"}}}'::profile;
-- profile merge is the per-trait state merge
SELECT profile_get(a.p || b.p, 1, NULL::recent_state) = (x.recent || y.recent) AS recent,
       profile_get(a.p || b.p, 2, NULL::top_state) = (x.top || y.top) AS top,
       profile_get(a.p || b.p, 3, NULL::windowed_state) = (x.windowed || y.windowed) AS windowed,
       profile_get(a.p || b.p, 4, NULL::distinct_state) = (x.dist || y.dist) AS dist,
       profile_get(a.p || b.p, 5, NULL::first_state) = (x.first || y.first) AS first,
       profile_get(a.p || b.p, 6, NULL::last_state) = (x.last || y.last) AS last,
       profile_get(a.p || b.p, 7, NULL::session_state) = (x.sess || y.sess) AS sess
FROM shopper_profiles a, shopper_profiles b, shopper_states x, shopper_states y
WHERE a.shopper = 0 AND b.shopper = 1 AND x.shopper = 0 AND y.shopper = 1;
-- and the profile of all events is the merge of the shoppers' profiles (top_state
-- weights are floating point, and beyond N a summary: compared apart)
CREATE TEMP TABLE whole_profile AS
SELECT profile_set(profile_set(profile_set(profile_set(profile_set(profile_set(profile_set('{}',
           1, recent_agg(sku, ts, 3)), 2, top_agg(cat, ts, 2, '1 day')), 3, windowed_agg(ts, amount)),
           4, distinct_agg(sku, 4)), 5, first_agg(sku, ts)), 6, last_agg(cat, ts)), 7, session_agg(ts, cat, sku)) AS p
FROM profile_events;
SELECT profile_remove(m, 2) = profile_remove(w.p, 2) AS merge_agg_equals_whole,
       top_values(profile_get(m, 2, NULL::top_state)) AS merged_top,
       top_values(profile_get(w.p, 2, NULL::top_state)) AS whole_top
FROM (SELECT merge_agg(p) AS m FROM shopper_profiles) q, whole_profile w;
-- the empty profile is the identity
SELECT bool_and(p || '{}' = p AND '{}' || p = p) AS identity FROM shopper_profiles;

-- the same trait with different kinds cannot merge
SELECT '{"4": {"last": {"value": "gold", "time": "2026-03-01"}}}'::profile
    || '{"4": {"first": {"value": "gold", "time": "2026-03-01"}}}'::profile;
SELECT merge_agg(p) FROM (VALUES ('{"4": {"last": {"value": "x", "time": "2026-03-01"}}}'::profile),
                                 ('{"4": {"recent": {"n": 2, "items": []}}}'::profile)) v(p);

-- NULL is the empty profile for merges
SELECT profile_merge(NULL, '{"1": {"last": {"value": "a", "time": "2026-01-01"}}}') AS null_left,
       profile_merge('{"1": {"last": {"value": "a", "time": "2026-01-01"}}}', NULL) AS null_right,
       profile_merge(NULL, NULL) IS NULL AS both_null,
       ('{}'::profile || NULL) = '{}' AS operator;
SELECT merge_agg(p) IS NULL AS all_null FROM (VALUES (NULL::profile), (NULL)) v(p);
SELECT merge_agg(p) IS NULL AS no_rows FROM shopper_profiles WHERE false;
SELECT merge_agg(p) FROM (VALUES (NULL::profile), ('{}'), (NULL)) v(p);
-- merge_agg in a parallel plan equals the serial one
CREATE TABLE many_profiles AS
SELECT g % 10 AS grp, profile_set(profile_set('{}', 1 + g % 3, last_agg('v' || x, '2026-01-01'::timestamptz + x * interval '1 h')),
                                  5, recent_agg(x, '2026-01-01'::timestamptz + x * interval '1 min', 4)) AS p
FROM generate_series(1, 3000) g, generate_series(g % 7, g % 7 + 3) x GROUP BY g;
ANALYZE many_profiles;
CREATE TEMP TABLE serial_result AS SELECT grp, merge_agg(p) AS m FROM many_profiles GROUP BY grp;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
CREATE FUNCTION plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r record; result text := '';
BEGIN
  FOR r IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP result := result || r."QUERY PLAN" || E'\n'; END LOOP;
  RETURN result;
END $$;
SELECT plan_of('SELECT grp, merge_agg(p) FROM many_profiles GROUP BY grp') ~ 'Partial' AS partial,
       plan_of('SELECT grp, merge_agg(p) FROM many_profiles GROUP BY grp') ~ 'Gather' AS gather;
SELECT count(*) AS groups, bool_and(s.m = q.m) AS parallel_equals_serial
FROM serial_result s JOIN (SELECT grp, merge_agg(p) AS m FROM many_profiles GROUP BY grp) q USING (grp);
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;

-- profile_set: add, replace (by a state of any kind), remove with NULL
SELECT profile_set('{}', 2, '{"value": "a", "time": "2026-01-01"}'::first_state);
SELECT profile_set('{"2": {"first": {"value": "a", "time": "2026-01-01"}}}', 2, '{"value": "b", "time": "2026-01-01"}'::last_state);
SELECT profile_set('{"2": {"first": {"value": "a", "time": "2026-01-01"}}}', 2, NULL::last_state);
SELECT profile_set(NULL, 7, '{"value": "a", "time": "2026-01-01"}'::first_state) AS null_profile_is_empty;
SELECT profile_set('{}', NULL, '{"value": "a", "time": "2026-01-01"}'::first_state);
SELECT profile_set('{}', 0, '{"value": "a", "time": "2026-01-01"}'::first_state);
SELECT profile_set('{}', 1, 'gold'::text);
SELECT profile_set('{}', 1, 42);
-- profile_get: absent or NULL input is NULL; the kind must match
SELECT profile_get('{}', 1, NULL::recent_state) IS NULL AS absent,
       profile_get(NULL, 1, NULL::recent_state) IS NULL AS null_profile,
       profile_get('{"1": {"last": {"value": "a", "time": "2026-01-01"}}}', NULL, NULL::last_state) IS NULL AS null_trait;
SELECT profile_get('{"1": {"last": {"value": "a", "time": "2026-01-01"}}}', 1, NULL::first_state);
SELECT profile_get('{"1": {"last": {"value": "a", "time": "2026-01-01"}}}', 1, NULL::text);
-- profile_traits, profile_remove
SELECT profile_traits('{"5": {"last": {"value": "a", "time": "2026-01-01"}}, "1": {"last": {"value": "b", "time": "2026-01-01"}}}');
SELECT profile_remove('{"5": {"last": {"value": "a", "time": "2026-01-01"}}, "1": {"last": {"value": "b", "time": "2026-01-01"}}}', 5);
SELECT profile_remove('{"5": {"last": {"value": "a", "time": "2026-01-01"}}}', 4);
SELECT profile_remove('{"5": {"last": {"value": "a", "time": "2026-01-01"}}}', 5) = '{}' AS emptied;
SELECT profile_traits(NULL) IS NULL AS strict_traits, profile_remove(NULL, 1) IS NULL AS strict_remove;

-- text input errors
SELECT '[]'::profile;
SELECT 'not json'::profile;
SELECT '{"x": {"last": {"value": "a", "time": "2026-01-01"}}}'::profile;
SELECT '{"0": {"last": {"value": "a", "time": "2026-01-01"}}}'::profile;
SELECT '{"-1": {"last": {"value": "a", "time": "2026-01-01"}}}'::profile;
SELECT '{"01": {"last": {"value": "a", "time": "2026-01-01"}}}'::profile;
SELECT '{"2147483648": {"last": {"value": "a", "time": "2026-01-01"}}}'::profile;
SELECT '{"99999999999999999999": {"last": {"value": "a", "time": "2026-01-01"}}}'::profile;
SELECT '{"1": {"last": {"value": "a", "time": "2026-01-01"}}, "1": {"last": {"value": "b", "time": "2026-01-01"}}}'::profile;
SELECT '{"1": {"lost": {"value": "a", "time": "2026-01-01"}}}'::profile;
SELECT '{"1": {"last_state": {"value": "a", "time": "2026-01-01"}}}'::profile;
SELECT '{"1": {}}'::profile;
SELECT '{"1": null}'::profile;
SELECT '{"1": {"last": {"value": "a", "time": "2026-01-01"}, "first": {"value": "a", "time": "2026-01-01"}}}'::profile;
SELECT '{"1": {"last": [1, 2]}}'::profile;
SELECT '{"1": {"recent": {"n": 0, "items": []}}}'::profile;
SELECT '{"1": {"last": {"value": "a", "time": "infinity"}}}'::profile;

-- binary send / receive: through COPY ... (FORMAT binary) of one field
\set SHOW_CONTEXT never
CREATE FUNCTION profile_copy_in(payload bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  lo oid;
  result text;
BEGIN
  lo := lo_from_bytea(0, '\x5047434f50590aff0d0a00'::bytea || '\x0000000000000000'::bytea || '\x0001'::bytea
                         || int4send(length(payload)) || payload || '\xffff'::bytea);
  PERFORM lo_export(lo, 'pz_profile_io.bin');
  PERFORM lo_unlink(lo);
  CREATE TEMP TABLE profile_copy_target (v profile);
  COPY profile_copy_target FROM 'pz_profile_io.bin' (FORMAT binary);
  SELECT v::text INTO result FROM profile_copy_target;
  DROP TABLE profile_copy_target;
  RETURN result;
END $$;
CREATE FUNCTION varint(v numeric) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE b bytea := '\x';
BEGIN
  LOOP
    IF v < 128 THEN RETURN b || set_byte('\x00'::bytea, 0, v::int); END IF;
    b := b || set_byte('\x00'::bytea, 0, (v % 128)::int + 128);
    v := floor(v / 128);
  END LOOP;
END $$;

SELECT shopper, profile_copy_in(profile_send(p)) = p::text AS round_trip, length(profile_send(p)) AS bytes
FROM shopper_profiles ORDER BY 1;
SELECT profile_copy_in(profile_send('{}'));
-- the layout: version, count, (id delta, length, state bytes)...
SELECT profile_send(profile_set(profile_set('{}', 3, s), 300, s)) AS flat,
       '\x01' || varint(2) || varint(3) || varint(length(first_state_send(s))) || first_state_send(s)
              || varint(297) || varint(length(first_state_send(s))) || first_state_send(s) AS expected
FROM (SELECT '{"value": "a", "time": "2000-01-01"}'::first_state s) q;
-- a state's non-canonical bytes are accepted and stored canonical
SELECT profile_copy_in('\x01' || varint(1) || varint(1) || varint(17) || '\x0101' || varint(3) || varint(2)
    || int8send(0) || varint(1) || '\x42'::bytea || varint(0) || varint(1) || '\x41'::bytea);

-- refused: wrong version, damaged framing, damaged or unknown states
SELECT profile_copy_in('\x02' || varint(0));
SELECT profile_copy_in('\x');
SELECT profile_copy_in('\x01');
SELECT profile_copy_in('\x01' || varint(0) || '\x00'::bytea);
SELECT profile_copy_in('\x01' || varint(1000));
SELECT profile_copy_in('\x01' || varint(2) || varint(3) || varint(length(b)) || b || varint(0) || varint(length(b)) || b)
FROM (SELECT first_state_send('{"value": "a", "time": "2000-01-01"}') b) q;
SELECT profile_copy_in('\x01' || varint(1) || varint(0) || varint(length(b)) || b)
FROM (SELECT first_state_send('{"value": "a", "time": "2000-01-01"}') b) q;
SELECT profile_copy_in('\x01' || varint(2) || varint(2147483647) || varint(length(b)) || b || varint(1) || varint(length(b)) || b)
FROM (SELECT first_state_send('{"value": "a", "time": "2000-01-01"}') b) q;
SELECT profile_copy_in('\x01' || varint(1) || varint(3) || varint(length(b) + 1) || b)
FROM (SELECT first_state_send('{"value": "a", "time": "2000-01-01"}') b) q;
SELECT profile_copy_in('\x01' || varint(1) || varint(3) || varint(1) || '\x01'::bytea);
-- (errors in a state name the trait)
\set SHOW_CONTEXT errors
SELECT profile_copy_in('\x01' || varint(1) || varint(3) || varint(length(b)) || overlay(b PLACING '\x09' FROM 2 FOR 1))
FROM (SELECT first_state_send('{"value": "a", "time": "2000-01-01"}') b) q;
\set SHOW_CONTEXT never
SELECT profile_copy_in('\x01' || varint(1) || varint(3) || varint(length(b)) || overlay(b PLACING '\x02' FROM 1 FOR 1))
FROM (SELECT first_state_send('{"value": "a", "time": "2000-01-01"}') b) q;
SELECT profile_copy_in('\x01' || varint(1) || varint(3) || varint(length(b) - 1) || substring(b FROM 1 FOR length(b) - 1))
FROM (SELECT first_state_send('{"value": "a", "time": "2000-01-01"}') b) q;
SELECT profile_copy_in('\x01' || varint(1) || varint(3) || varint(4) || '\x0101' || varint(0) || varint(0));
