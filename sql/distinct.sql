-- distinct count: HyperLogLog, sparse while small.
SET search_path = personalize, public;

-- small sets are counted exactly (sparse registers, linear-counting range)
SELECT n, distinct_count(distinct_agg(x)) FROM generate_series(0, 100, 25) n,
  LATERAL (SELECT x FROM generate_series(1, n) x) s GROUP BY n ORDER BY n;
-- text and bigint forms of one value are one value
SELECT distinct_count(distinct_agg(v)) FROM (
  SELECT x::text v FROM generate_series(1, 50) x) q;
SELECT (SELECT distinct_agg(x) FROM generate_series(1, 50) x)
     = (SELECT distinct_agg(x::text) FROM generate_series(1, 50) x) AS same_state;
-- duplicates and NULLs do not count
SELECT distinct_count(distinct_agg(v)) FROM unnest(ARRAY['a', 'b', 'a', NULL, 'b']) v;
SELECT distinct_agg(v) IS NULL AS is_null FROM unnest(ARRAY[NULL::text]) v;
-- large: within 3 standard errors (1.04 / sqrt(4096) = 1.6 %)
SELECT abs(distinct_count(distinct_agg(x)) - 200000) < 3 * 0.01625 * 200000 AS within_bound,
       length(distinct_agg(x)::text) > 1000 AS dense
FROM generate_series(1, 200000) x;
-- precision
SELECT distinct_precision(distinct_agg(x, 14)), distinct_count(distinct_agg(x, 14))
FROM generate_series(1, 1000) x;
SELECT distinct_precision(distinct_agg(x)) FROM generate_series(1, 3) x;

-- text form and round trip (sparse and dense)
SELECT distinct_agg(x, 4) FROM generate_series(1, 3) x;
SELECT s::text::distinct_state = s AS round_trip, pg_column_size(s) AS bytes
FROM (SELECT distinct_agg(x, p) s FROM generate_series(1, 5000) x, (VALUES (4), (8), (12)) v(p) GROUP BY p) q
ORDER BY bytes;
SELECT '{"p": 4, "registers": [[3, 2], [1, 5], [3, 7]]}'::distinct_state;

-- merge is the register-wise maximum: a union
SELECT distinct_count((SELECT distinct_agg(x) FROM generate_series(1, 60) x)
                   || (SELECT distinct_agg(x) FROM generate_series(41, 100) x));
SELECT distinct_count(merge_agg(s)) FROM (
  SELECT distinct_agg(x) s FROM generate_series(1, 100) x GROUP BY x % 7) q;

-- as a window aggregate the state goes on after each final call, through
-- the switch from sparse to dense: every running state equals the
-- aggregate over its prefix
SELECT count(*) AS rows, count(*) FILTER (WHERE running <> (SELECT distinct_agg(y, 6) FROM generate_series(1, x) y)) AS mismatches
FROM (SELECT x, distinct_agg(x, 6) OVER (ORDER BY x) running FROM generate_series(1, 200) x) q;

-- errors
SELECT distinct_agg(x, 3) FROM generate_series(1, 3) x;
SELECT distinct_agg(x, 17) FROM generate_series(1, 3) x;
SELECT distinct_agg(x, NULL) FROM generate_series(1, 3) x;
SELECT (SELECT distinct_agg(1, 10)) || (SELECT distinct_agg(1, 11));
SELECT '{"p": 3, "registers": []}'::distinct_state;
SELECT '{"p": 4, "registers": [[16, 1]]}'::distinct_state;
SELECT '{"p": 4, "registers": [[1, 0]]}'::distinct_state;
SELECT '{"p": 4, "registers": [[1, 62]]}'::distinct_state;
SELECT '{"p": 4, "registers": [[-1, 1]]}'::distinct_state;
SELECT '{"p": 4, "registers": [[1, 1, 1]]}'::distinct_state;
SELECT '{"p": 4}'::distinct_state;

-- every register at its largest rank: the estimate saturates, it does not wrap
SELECT distinct_count(('{"p": 4, "registers": [' || string_agg(format('[%s, 61]', i), ', ') || ']}')::distinct_state)
FROM generate_series(0, 15) i;
