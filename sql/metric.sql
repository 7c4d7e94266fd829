-- metric: exact count, sum, min and max of numeric values.
SET search_path = personalize, public;
SET TimeZone = 'UTC';
\set SHOW_CONTEXT never

CREATE TABLE metric_orders (shopper int, amount numeric);
INSERT INTO metric_orders
SELECT x % 7, CASE WHEN x % 11 = 0 THEN NULL ELSE round(x * 1.37 - 400, 2) END
FROM generate_series(1, 1000) x;

-- as declared
SELECT p.oid::regprocedure AS function, p.provolatile AS vol, p.proisstrict AS strict,
       p.proparallel AS par, obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment
FROM pg_proc p
WHERE p.pronamespace = 'personalize'::regnamespace
  AND (p.proname LIKE 'metric%' OR 'metric_state'::regtype = ANY (p.proargtypes))
ORDER BY p.oid::regprocedure::text;

-- the aggregate agrees with the built-in aggregates, group by group
SELECT count(*) AS groups,
       bool_and(metric_value(c) = n AND metric_count(c) = n) AS count_ok,
       bool_and(metric_value(s) = total AND metric_count(s) = n) AS sum_ok,
       bool_and(metric_value(lo) = low AND metric_count(lo) = n) AS min_ok,
       bool_and(metric_value(hi) = high AND metric_count(hi) = n) AS max_ok
FROM (SELECT shopper, metric_agg('count', amount) c, metric_agg('sum', amount) s,
             metric_agg('min', amount) lo, metric_agg('max', amount) hi,
             count(amount) n, sum(amount) total, min(amount) low, max(amount) high
      FROM metric_orders GROUP BY shopper) q;
SELECT metric_agg('count', amount), metric_agg('sum', amount), metric_agg('min', amount),
       metric_agg('max', amount)
FROM metric_orders;
SELECT metric_value(metric_agg('sum', amount)) = sum(amount) AS sum_exact FROM metric_orders;
-- sums stay exact where float8 would round
SELECT metric_value(metric_agg('sum', v)) FROM (VALUES (0.1), (0.2), (1e20), (-1e20)) t(v);
-- integer columns, and NULLs skipped for every op
SELECT metric_agg('sum', x), metric_agg('count', x), metric_agg('max', x)
FROM (VALUES (1), (NULL), (3)) t(x);
SELECT metric_agg('sum', x) IS NULL AS no_rows_is_null FROM (VALUES (NULL::int)) t(x);
-- merge_agg of per-group states equals the state over all rows
SELECT op, merge_agg(s) = (SELECT metric_agg(op, amount) FROM metric_orders) AS merge_agg_ok
FROM (SELECT op, shopper, metric_agg(op, amount) s
      FROM metric_orders, unnest(ARRAY['count', 'sum', 'min', 'max']) op GROUP BY op, shopper) q
GROUP BY op ORDER BY op;
-- in a parallel plan (partial aggregates combined) as in a serial one
CREATE TABLE metric_many AS
SELECT g % 10 AS grp, (g * 7919 % 10007) / 100.0 - 30 AS v FROM generate_series(1, 20000) g;
ANALYZE metric_many;
CREATE TEMP TABLE metric_serial AS
SELECT grp, metric_agg('sum', v) s, metric_agg('min', v) lo, metric_agg('max', v) hi, metric_agg('count', v) c
FROM metric_many GROUP BY grp;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
CREATE FUNCTION pg_temp.metric_plan(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r record; result text := '';
BEGIN
  FOR r IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP result := result || r."QUERY PLAN" || E'\n'; END LOOP;
  RETURN result;
END $$;
SELECT pg_temp.metric_plan('SELECT grp, metric_agg(''sum'', v) FROM metric_many GROUP BY grp') ~ 'Partial' AS partial;
SELECT count(*) AS groups, bool_and(a.s = b.s AND a.lo = b.lo AND a.hi = b.hi AND a.c = b.c) AS parallel_equals_serial
FROM metric_serial a JOIN (
  SELECT grp, metric_agg('sum', v) s, metric_agg('min', v) lo, metric_agg('max', v) hi, metric_agg('count', v) c
  FROM metric_many GROUP BY grp) b USING (grp);
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;

-- text form and round trip
SELECT '{"op": "sum", "count": 3, "value": "12.50"}'::metric_state;
SELECT '{"count": 3, "op": "count"}'::metric_state;
SELECT '{"op": "min", "count": 1, "value": " -1.5e2 "}'::metric_state;
SELECT s::text::metric_state = s AS round_trip, s::text
FROM (SELECT metric_agg(op, amount) s
      FROM metric_orders, unnest(ARRAY['count', 'sum', 'min', 'max']) op GROUP BY op) q
ORDER BY 2;
SELECT '{"op": "sum", "count": 2, "value": "1.50"}'::metric_state
     = '{"op": "sum", "count": 2, "value": "1.5"}'::metric_state AS scale_is_kept;

-- merge, for each op
SELECT '{"op": "count", "count": 3}'::metric_state || '{"op": "count", "count": 4}'::metric_state;
SELECT '{"op": "sum", "count": 3, "value": "12.50"}'::metric_state
    || '{"op": "sum", "count": 1, "value": "-0.125"}'::metric_state;
SELECT '{"op": "min", "count": 3, "value": "12.50"}'::metric_state
    || '{"op": "min", "count": 1, "value": "-7"}'::metric_state;
SELECT '{"op": "max", "count": 3, "value": "12.50"}'::metric_state
    || '{"op": "max", "count": 1, "value": "-7"}'::metric_state;
-- equal values of different scales: the one with more digits, in either order
SELECT a || b AS ab, b || a AS ba
FROM (VALUES ('{"op": "min", "count": 1, "value": "2.5"}'::metric_state,
              '{"op": "min", "count": 1, "value": "2.500"}'::metric_state)) t(a, b);
-- NULL is the empty state
SELECT state_merge('{"op": "sum", "count": 1, "value": "5"}'::metric_state, NULL);
SELECT state_merge(NULL::metric_state, '{"op": "max", "count": 1, "value": "5"}'::metric_state);

-- the constructor, from built-in aggregates
SELECT metric_state_make('count', count(amount), NULL) = metric_agg('count', amount) AS count_ok,
       metric_state_make('sum', count(amount), sum(amount)) = metric_agg('sum', amount) AS sum_ok,
       metric_state_make('min', count(amount), min(amount)) = metric_agg('min', amount) AS min_ok,
       metric_state_make('max', count(amount), max(amount)) = metric_agg('max', amount) AS max_ok
FROM metric_orders;
SELECT metric_state_make('sum', 0, NULL) IS NULL AS zero_is_null,
       metric_state_make('sum', NULL, 5) IS NULL AS null_is_null;
SELECT metric_state_make('count', 2, 17);

-- accessors
SELECT metric_op(s), metric_count(s), metric_value(s)
FROM (VALUES ('{"op": "count", "count": 42}'::metric_state),
             ('{"op": "sum", "count": 3, "value": "12.50"}')) t(s);

-- errors
SELECT metric_agg('avg', x) FROM generate_series(1, 3) x;
SELECT metric_agg(NULL, x) FROM generate_series(1, 3) x;
SELECT metric_agg(CASE WHEN x < 2 THEN 'min' ELSE 'max' END, x) FROM generate_series(1, 3) x;
SELECT metric_agg('sum', v) FROM (VALUES (1), ('NaN'::numeric)) t(v);
SELECT metric_agg('max', v) FROM (VALUES (1), ('Infinity'::numeric)) t(v);
SELECT '{"op": "sum", "count": 1, "value": "1"}'::metric_state || '{"op": "min", "count": 1, "value": "1"}'::metric_state;
SELECT merge_agg(s) FROM (VALUES ('{"op": "count", "count": 1}'::metric_state),
                                 ('{"op": "max", "count": 1, "value": "1"}')) t(s);
SELECT '{"op": "avg", "count": 1, "value": "1"}'::metric_state;
SELECT '{"op": 1, "count": 1, "value": "1"}'::metric_state;
SELECT '{"op": "sum", "count": 1}'::metric_state;
SELECT '{"op": "sum", "count": 1, "value": "1", "x": 1}'::metric_state;
SELECT '{"op": "count", "count": 1, "value": "1"}'::metric_state;
SELECT '{"op": "sum", "count": 0, "value": "1"}'::metric_state;
SELECT '{"op": "sum", "count": 1.5, "value": "1"}'::metric_state;
SELECT '{"op": "sum", "count": 1, "value": 1}'::metric_state;
SELECT '{"op": "sum", "count": 1, "value": "NaN"}'::metric_state;
SELECT '{"op": "sum", "count": 1, "value": "-Infinity"}'::metric_state;
SELECT '{"op": "sum", "count": 1, "value": "12,50"}'::metric_state;
SELECT '[1]'::metric_state;
SELECT metric_state_make('sum', 3, NULL);
SELECT metric_state_make('sum', -1, 5);
SELECT metric_state_make('median', 3, 5);
SELECT metric_state_make(NULL, 3, 5);
SELECT metric_state_make('min', 3, 'NaN');

-- binary send / receive.  Receive is reached through COPY ... (FORMAT binary)
-- from a file written with lo_export: a binary COPY file holding one field.
CREATE FUNCTION metric_copy_in(payload bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  path text := 'pz_metric_io.bin';
  lo oid;
  result text;
BEGIN
  lo := lo_from_bytea(0, '\x5047434f50590aff0d0a00'::bytea    -- signature
                         || '\x0000000000000000'::bytea       -- flags, extension
                         || '\x0001'::bytea                   -- one field
                         || int4send(length(payload)) || payload
                         || '\xffff'::bytea);                 -- trailer
  PERFORM lo_export(lo, path);
  PERFORM lo_unlink(lo);
  CREATE TEMP TABLE metric_copy_target (v metric_state);
  EXECUTE format('COPY metric_copy_target FROM %L (FORMAT binary)', path);
  SELECT v::text INTO result FROM metric_copy_target;
  DROP TABLE metric_copy_target;
  RETURN result;
END $$;
CREATE TABLE metric_binary (s metric_state);
INSERT INTO metric_binary
SELECT metric_agg(op, amount) FROM metric_orders, unnest(ARRAY['count', 'sum', 'min', 'max']) op
GROUP BY op;
INSERT INTO metric_binary VALUES
  ('{"op": "sum", "count": 9223372036854775807, "value": "-0.000000000000000000001"}'),
  ('{"op": "max", "count": 1, "value": "123456789012345678901234567890.5"}');
SELECT metric_state_send(s), metric_copy_in(metric_state_send(s)) = s::text AS round_trip
FROM metric_binary ORDER BY 1;
-- crafted payloads: a canonical state is accepted; anything else is refused
SELECT metric_copy_in('\x010802' || '\x03'::bytea || '\x04'::bytea || convert_to('1.25', 'UTF8'));
SELECT metric_copy_in('\x010801' || '\x05'::bytea);
SELECT metric_copy_in('\x010805' || '\x01'::bytea);
SELECT metric_copy_in('\x010800' || '\x01'::bytea);
SELECT metric_copy_in('\x010802' || '\x00'::bytea || '\x01'::bytea || convert_to('1', 'UTF8'));
SELECT metric_copy_in('\x010802' || '\x01'::bytea || '\x03'::bytea || convert_to('NaN', 'UTF8'));
SELECT metric_copy_in('\x010803' || '\x01'::bytea || '\x08'::bytea || convert_to('Infinity', 'UTF8'));
SELECT metric_copy_in('\x010802' || '\x01'::bytea || '\x03'::bytea || convert_to('1e3', 'UTF8'));
SELECT metric_copy_in('\x010802' || '\x01'::bytea || '\x02'::bytea || convert_to('01', 'UTF8'));
SELECT metric_copy_in('\x010802' || '\x01'::bytea || '\x02'::bytea || convert_to('-0', 'UTF8'));
SELECT metric_copy_in('\x010802' || '\x01'::bytea || '\x02'::bytea || convert_to('1.', 'UTF8'));
SELECT metric_copy_in('\x010802' || '\x01'::bytea || '\x04'::bytea || convert_to(' 1.5', 'UTF8'));
SELECT metric_copy_in('\x010802' || '\x01'::bytea);
SELECT metric_copy_in('\x010801' || '\x01'::bytea || '\x00'::bytea);

-- in a profile
SELECT profile_set(profile_set(NULL, 1, metric_agg('sum', amount)), 2, metric_agg('count', amount))
FROM metric_orders;
SELECT metric_value(profile_get(p, 1, NULL::metric_state)) = (SELECT sum(amount) FROM metric_orders) AS sum_ok,
       metric_value(profile_get(p, 2, NULL::personalize.metric_state)) AS orders
FROM (SELECT profile_set(profile_set(NULL, 1, metric_agg('sum', amount)), 2, metric_agg('count', amount)) p
      FROM metric_orders) q;
SELECT profile_get(p || p, 1, NULL::metric_state) AS doubled, p::text::profile = p AS round_trip
FROM (SELECT '{"1": {"metric": {"op": "max", "count": 2, "value": "9.99"}}}'::profile p) q;
SELECT profile_get('{"1": {"metric": {"op": "max", "count": 2, "value": "9.99"}}}'::profile, 1, NULL::last_state);
SELECT '{"1": {"metric": {"op": "max", "count": 2, "value": "9.99"}}}'::profile
    || '{"1": {"metric": {"op": "min", "count": 2, "value": "9.99"}}}'::profile;

-- stored values read back exactly: digits, scale and sign, with up to 18
-- digits (read without numeric_in) and more (read with it)
SELECT count(*) AS values,
       count(*) FILTER (WHERE metric_value(s) IS DISTINCT FROM v
                          OR scale(metric_value(s)) IS DISTINCT FROM scale(v)
                          OR metric_value(s)::text IS DISTINCT FROM v::text) AS differ
FROM (SELECT round(((random() - 0.5) * 10 ^ (g % 25))::numeric, g % 7) AS v
        FROM generate_series(1, 5000) g
      UNION ALL VALUES (0), (0.00), (-0.5), (123456789012345678), (1234567890123456789),
                       (-999999999999999999.9), (0.000001), (100)) x,
     LATERAL (SELECT metric_agg('max', y.w) AS s FROM (SELECT x.v AS w) y) a;

DROP TABLE metric_orders, metric_many, metric_binary;
DROP FUNCTION metric_copy_in(bytea);
