-- windowed count/sum: buckets by age, read over any window at read time.
SET search_path = personalize, public;
SET TimeZone = 'UTC';
SET extra_float_digits = 0;

CREATE TABLE windowed_orders (shopper int, amount numeric, ts timestamptz);
INSERT INTO windowed_orders VALUES
  (1, 10, '2026-03-10 11:59:00'), (1, 20, '2026-03-10 11:30:00'), (1, 5, '2026-03-10 10:59:59'),
  (1, 7, '2026-03-09 13:00:00'), (1, 100, '2026-03-05 00:00:00'), (1, 1, '2026-02-20 00:00:00'),
  (1, 1000, '2025-01-01 00:00:00'), (1, NULL, '2026-03-10 11:00'), (2, 3, '2026-03-10 12:00');

-- read at noon: last hour, day, week, month, and all time
SELECT shopper,
       windowed_count(s, '1 hour', '2026-03-10 12:00') AS h1,
       windowed_count(s, '24 hours', '2026-03-10 12:00') AS h24,
       windowed_count(s, '7 days', '2026-03-10 12:00') AS d7,
       windowed_count(s, '30 days', '2026-03-10 12:00') AS d30,
       windowed_sum(s, '30 days', '2026-03-10 12:00') AS sum30,
       windowed_total_count(s) AS total, windowed_total_sum(s) AS total_sum,
       windowed_latest(s) AS latest
FROM (SELECT shopper, windowed_agg(ts, amount) s FROM windowed_orders GROUP BY 1) q ORDER BY 1;
-- the same against a brute-force count
SELECT count(*) FILTER (WHERE ts >= '2026-03-10 11:00') AS h1,
       count(*) FILTER (WHERE ts >= '2026-03-09 12:00') AS h24,
       count(*) FILTER (WHERE ts >= '2026-03-03 12:00') AS d7,
       count(*) FILTER (WHERE ts >= '2026-02-08 12:00') AS d30
FROM windowed_orders WHERE shopper = 1 AND amount IS NOT NULL;
-- count-only form counts every row with a time
SELECT windowed_total_count(windowed_agg(ts)) FROM windowed_orders WHERE shopper = 1;
-- reading earlier than the latest event leaves later buckets out
SELECT windowed_count(windowed_agg(ts), '1 day', '2026-03-09 23:00') FROM windowed_orders WHERE shopper = 1;
-- windows use now() when no time is given (these events are in the future)
SELECT windowed_count(windowed_agg(ts), '1 hour') >= 0 AS reads_at_now FROM windowed_orders;

-- text form: buckets per zone (minute, hour, day); round trip
SELECT windowed_agg(ts, amount) FROM windowed_orders WHERE shopper = 1;
SELECT s::text::windowed_state::text = s::text AS round_trip
FROM (SELECT windowed_agg(ts, amount) s FROM windowed_orders) q;
-- input is re-bucketed into canonical form
SELECT '{"head": "2026-03-10 12:00", "count": 3, "sum": 3, "buckets": [["2026-03-01 05:17", 1, 1], ["2026-03-01 05:00", 1, 1], ["2026-03-10 11:59", 1, 1]]}'::windowed_state;

-- merge equals the aggregate over all rows
SELECT (SELECT windowed_agg(ts, amount) FROM windowed_orders WHERE ts < '2026-03-09')
    || (SELECT windowed_agg(ts, amount) FROM windowed_orders WHERE ts >= '2026-03-09')
    = (SELECT windowed_agg(ts, amount) FROM windowed_orders) AS merge_equals_whole;

-- errors
SELECT windowed_count(windowed_agg(ts), '-1 hour', now()) FROM windowed_orders;
SELECT windowed_count(windowed_agg(ts), '1 hour', 'infinity') FROM windowed_orders;
SELECT windowed_agg(ts, 'Infinity') FROM windowed_orders;
SELECT windowed_agg('-infinity'::timestamptz);
SELECT '{"head": "2026-03-10", "count": 0, "sum": 0, "buckets": []}'::windowed_state;
SELECT '{"head": "2026-03-10", "count": 1, "sum": 0, "buckets": [["2026-03-11", 1, 0]]}'::windowed_state;
SELECT '{"head": "2026-03-10", "count": 1, "sum": 0, "buckets": [["2026-03-09", 2, 0]]}'::windowed_state;
SELECT '{"head": "2026-03-10", "count": 1, "sum": 0, "buckets": [["2026-03-09", 0, 0]]}'::windowed_state;
SELECT '{"head": "2026-03-10", "count": 1, "sum": "x", "buckets": []}'::windowed_state;
SELECT '{"head": "2026-03-10", "count": 1, "sum": 0, "buckets": {}}'::windowed_state;

-- sums and counts that would overflow are refused, never stored
SELECT windowed_agg('2026-03-10'::timestamptz, v) FROM unnest(ARRAY[1e308, 1e308]) v;
SELECT '{"head": "2026-03-10", "count": 5000000000000000000, "sum": 0, "buckets": []}'::windowed_state
    || '{"head": "2026-03-10", "count": 5000000000000000000, "sum": 0, "buckets": []}'::windowed_state;
SELECT '{"head": "2026-03-10", "count": 9223372036854775807, "sum": 0, "buckets": [["2026-03-09", 9223372036854775807, 0], ["2026-03-08", 9223372036854775807, 0]]}'::windowed_state;
