-- recent(N): the N most recent distinct values with their times.
SET search_path = personalize, public;
SET TimeZone = 'UTC';

CREATE TABLE recent_views (shopper int, sku text, ts timestamptz);
INSERT INTO recent_views VALUES
  (1, 'shoe-a', '2026-03-01 10:00'), (1, 'shoe-b', '2026-03-01 10:05'),
  (1, 'shoe-a', '2026-03-01 10:09'), (1, 'sock-1', '2026-03-01 10:07'),
  (1, 'shoe-c', '2026-03-01 09:00'), (1, NULL, '2026-03-01 11:00'),
  (1, 'hat-1', NULL),
  (2, 'bag-9', '2026-03-02 08:00');

-- newest first, each value once, at its latest time; NULL rows skipped
SELECT shopper, recent_values(recent_agg(sku, ts, 3)), recent_times(recent_agg(sku, ts, 3))
FROM recent_views GROUP BY shopper ORDER BY shopper;
SELECT * FROM recent_items((SELECT recent_agg(sku, ts, 10) FROM recent_views WHERE shopper = 1));

-- bigint values are held as their decimal text
SELECT recent_values(recent_agg(id, '2026-01-01'::timestamptz + id * interval '1 s', 3))::bigint[]
FROM generate_series(1, 100) id;
-- ties on time: smaller bytes first
SELECT recent_values(recent_agg(v, '2026-01-01', 2)) FROM unnest(ARRAY['b', 'a', 'c']) v;
-- no usable rows: NULL
SELECT recent_agg(sku, ts, 3) IS NULL AS is_null FROM recent_views WHERE false;

-- text round trip, and the canonical form of unsorted, duplicated input
SELECT '{"n": 2, "items": [["x", "2026-01-01 00:00:00+00"]]}'::recent_state;
SELECT '{"n": 2, "items": [["a", "2026-01-01"], ["b", "2026-01-03"], ["a", "2026-01-02"], ["c", "2025-01-01"]]}'::recent_state;
SELECT s::text::recent_state::text = s::text AS round_trip
FROM (SELECT recent_agg(sku, ts, 5) s FROM recent_views) q;
SELECT recent_size('{"n": 7, "items": []}');

-- merge: union keeping latest times, then the smaller N
SELECT '{"n": 3, "items": [["a", "2026-01-01"], ["b", "2026-01-02"]]}'::recent_state
    || '{"n": 2, "items": [["a", "2026-01-05"], ["c", "2026-01-03"]]}'::recent_state;
SELECT state_merge(NULL::recent_state, '{"n": 1, "items": []}');
SELECT state_merge(NULL::recent_state, NULL) IS NULL AS is_null;
SELECT recent_values(merge_agg(s)) FROM (
  SELECT recent_agg(sku, ts, 3) s FROM recent_views GROUP BY shopper) q;

-- errors
SELECT recent_agg(sku, ts, 0) FROM recent_views;
SELECT recent_agg(sku, ts, 1001) FROM recent_views;
SELECT recent_agg(sku, ts, NULL) FROM recent_views;
SELECT recent_agg(sku, ts, CASE WHEN sku = 'bag-9' THEN 2 ELSE 3 END) FROM recent_views;
SELECT recent_agg('x', 'infinity'::timestamptz, 3);
-- values are bounded by personalize.max_value_bytes (stored states are not)
SELECT recent_agg(repeat('x', 3000), '2026-01-01', 3);
SET personalize.max_value_bytes = 4000;
SELECT length((recent_values(recent_agg(repeat('x', 3000), '2026-01-01', 3)))[1]);
RESET personalize.max_value_bytes;
SELECT length((recent_values(('{"n": 1, "items": [["' || repeat('y', 3000) || '", "2026-01-01"]]}')::recent_state))[1]);
SELECT '{"n": 0, "items": []}'::recent_state;
SELECT '{"n": 2}'::recent_state;
SELECT '{"n": 2, "items": [], "extra": 1}'::recent_state;
SELECT '{"n": 2, "items": [["x"]]}'::recent_state;
SELECT '{"n": 2, "items": [[1, "2026-01-01"]]}'::recent_state;
SELECT '{"n": 2, "items": [["x", "yesterday-ish"]]}'::recent_state;
SELECT '{"n": 2.5, "items": []}'::recent_state;
SELECT '{"n": 99999999999999999999, "items": []}'::recent_state;
SELECT '[1, 2]'::recent_state;
SELECT '{"n": 2, "items": [' ::recent_state;
SELECT 'garbage'::recent_state;
SELECT ''::recent_state;
