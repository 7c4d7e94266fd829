-- The combinable aggregates (src/combinable.c): each gives what the local
-- aggregate gives, serially, in parallel plans (partial states combined),
-- as a window aggregate, and over NULLs; merge_agg_combinable as merge_agg.
-- Citus combining them across nodes is test/t/015_citus.pl's.
SET search_path = personalize, public;
SET TimeZone = 'UTC';

CREATE TABLE cb_events (shopper int, sku text, skuid bigint, cat text, ts timestamptz,
                        amount numeric, w float8);
INSERT INTO cb_events
SELECT s, 'sku-' || ((s * 7 + x) % 23), (s * 7 + x) % 23, 'cat-' || ((s + x * x) % 6),
       '2026-01-01'::timestamptz + (s * 37 + x * 11) * interval '1 min',
       ((s * x) % 17) + 0.25 * (x % 3), ((s + x) % 5) * 1.5
FROM generate_series(1, 400) s, generate_series(1, (s % 11) * 3) x;
INSERT INTO cb_events VALUES (401, NULL, NULL, NULL, NULL, NULL, NULL);
ANALYZE cb_events;

-- every aggregate, local and combinable, as text per shopper
CREATE VIEW cb_pairs AS
SELECT shopper,
  recent_agg(sku, ts, 5)::text AS recent, recent_agg_combinable(sku, ts, 5)::text AS recent_c,
  recent_agg(skuid, ts, 5)::text AS recent8, recent_agg_combinable(skuid, ts, 5)::text AS recent8_c,
  top_agg(cat, ts, 3, '2 days')::text AS top, top_agg_combinable(cat, ts, 3, '2 days')::text AS top_c,
  top_agg(cat, ts, 3, '2 days', w)::text AS topw, top_agg_combinable(cat, ts, 3, '2 days', w)::text AS topw_c,
  top_agg(skuid, ts, 3, '1 day')::text AS top8, top_agg_combinable(skuid, ts, 3, '1 day')::text AS top8_c,
  top_agg(skuid, ts, 3, '1 day', w)::text AS top8w, top_agg_combinable(skuid, ts, 3, '1 day', w)::text AS top8w_c,
  windowed_agg(ts)::text AS win, windowed_agg_combinable(ts)::text AS win_c,
  windowed_agg(ts, w)::text AS wsum, windowed_agg_combinable(ts, w)::text AS wsum_c,
  distinct_agg(sku)::text AS dist, distinct_agg_combinable(sku)::text AS dist_c,
  distinct_agg(sku, 8)::text AS dist8, distinct_agg_combinable(sku, 8)::text AS dist8_c,
  distinct_agg(skuid)::text AS disti, distinct_agg_combinable(skuid)::text AS disti_c,
  distinct_agg(skuid, 6)::text AS disti6, distinct_agg_combinable(skuid, 6)::text AS disti6_c,
  first_agg(sku, ts)::text AS first, first_agg_combinable(sku, ts)::text AS first_c,
  first_agg(skuid, ts)::text AS first8, first_agg_combinable(skuid, ts)::text AS first8_c,
  last_agg(cat, ts)::text AS last, last_agg_combinable(cat, ts)::text AS last_c,
  last_agg(skuid, ts)::text AS last8, last_agg_combinable(skuid, ts)::text AS last8_c,
  session_agg(ts, cat, sku)::text AS sess, session_agg_combinable(ts, cat, sku)::text AS sess_c,
  session_agg(ts, cat, sku, '20 minutes')::text AS sessg, session_agg_combinable(ts, cat, sku, '20 minutes')::text AS sessg_c,
  metric_agg('sum', amount)::text AS msum, metric_agg_combinable('sum', amount)::text AS msum_c,
  metric_agg('max', amount)::text AS mmax, metric_agg_combinable('max', amount)::text AS mmax_c
FROM cb_events GROUP BY shopper;

CREATE FUNCTION cb_differ() RETURNS TABLE (shoppers bigint, differ bigint, with_states bigint)
LANGUAGE sql AS $$
  SELECT count(*),
         count(*) FILTER (WHERE recent IS DISTINCT FROM recent_c OR recent8 IS DISTINCT FROM recent8_c
                             OR top IS DISTINCT FROM top_c OR topw IS DISTINCT FROM topw_c
                             OR top8 IS DISTINCT FROM top8_c OR top8w IS DISTINCT FROM top8w_c
                             OR win IS DISTINCT FROM win_c OR wsum IS DISTINCT FROM wsum_c
                             OR dist IS DISTINCT FROM dist_c OR dist8 IS DISTINCT FROM dist8_c
                             OR disti IS DISTINCT FROM disti_c OR disti6 IS DISTINCT FROM disti6_c
                             OR first IS DISTINCT FROM first_c OR first8 IS DISTINCT FROM first8_c
                             OR last IS DISTINCT FROM last_c OR last8 IS DISTINCT FROM last8_c
                             OR sess IS DISTINCT FROM sess_c OR sessg IS DISTINCT FROM sessg_c
                             OR msum IS DISTINCT FROM msum_c OR mmax IS DISTINCT FROM mmax_c),
         count(*) FILTER (WHERE recent_c IS NOT NULL AND win_c IS NOT NULL AND msum_c IS NOT NULL)
  FROM cb_pairs $$;

-- serially
SELECT * FROM cb_differ();
-- the shopper without events: NULL both ways
SELECT recent, recent_c, msum_c FROM cb_pairs WHERE shopper = 401;

-- in a parallel plan: each worker's partial states combined by _state_combine
-- (compared as far as merge is exact, docs/trait-states.md: the two plans
-- may split the rows differently; top while it holds no more values than
-- its N, session for the current session)
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET enable_hashagg = off;
CREATE FUNCTION cb_partial_plan(q text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        IF line LIKE '%Partial%Aggregate%' THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $$;
SELECT cb_partial_plan('SELECT cat, recent_agg_combinable(sku, ts, 5) FROM cb_events GROUP BY cat') AS partial_plan;
SELECT cat, recent_agg(sku, ts, 5)::text = recent_agg_combinable(sku, ts, 5)::text AS recent,
       top_values(top_agg(sku, ts, 30, '3 days')) = top_values(top_agg_combinable(sku, ts, 30, '3 days')) AS top,
       windowed_agg(ts, w)::text = windowed_agg_combinable(ts, w)::text AS windowed,
       distinct_agg(sku)::text = distinct_agg_combinable(sku)::text AS dist,
       first_agg(sku, ts)::text = first_agg_combinable(sku, ts)::text AS first,
       last_agg(sku, ts)::text = last_agg_combinable(sku, ts)::text AS last,
       session_info(session_agg(ts, cat, sku)) = session_info(session_agg_combinable(ts, cat, sku)) AS session,
       metric_agg('min', amount)::text = metric_agg_combinable('min', amount)::text AS metric
FROM cb_events WHERE cat IS NOT NULL GROUP BY cat ORDER BY cat;
RESET enable_hashagg;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- merge_agg_combinable over stored states: the same as merge_agg
CREATE TABLE cb_states AS
SELECT shopper % 7 AS g, recent_agg(sku, ts, 4) AS r, windowed_agg(ts) AS w, distinct_agg(sku) AS d,
       metric_agg('sum', amount) AS m, top_agg(cat, ts, 2, '1 day') AS t
FROM cb_events GROUP BY shopper;
SELECT count(*) AS groups,
       count(*) FILTER (WHERE merge_r IS DISTINCT FROM merge_r_c OR merge_w IS DISTINCT FROM merge_w_c
                           OR merge_d IS DISTINCT FROM merge_d_c OR merge_m IS DISTINCT FROM merge_m_c
                           OR merge_t IS DISTINCT FROM merge_t_c) AS differ
FROM (SELECT g, merge_agg(r)::text AS merge_r, merge_agg_combinable(r)::text AS merge_r_c,
             merge_agg(w)::text AS merge_w, merge_agg_combinable(w)::text AS merge_w_c,
             merge_agg(d)::text AS merge_d, merge_agg_combinable(d)::text AS merge_d_c,
             merge_agg(m)::text AS merge_m, merge_agg_combinable(m)::text AS merge_m_c,
             merge_agg(t)::text AS merge_t, merge_agg_combinable(t)::text AS merge_t_c
      FROM cb_states GROUP BY g) q;

-- as a window aggregate: the running state at every row
SELECT count(*) AS rows,
       count(*) FILTER (WHERE a IS DISTINCT FROM b) AS differ
FROM (SELECT recent_agg(sku, ts, 3) OVER w::text AS a, recent_agg_combinable(sku, ts, 3) OVER w::text AS b
      FROM cb_events WHERE shopper <= 20
      WINDOW w AS (PARTITION BY shopper ORDER BY ts)) q;

-- the local aggregate's errors, as they are
SELECT recent_agg_combinable(sku, ts, x) FROM (SELECT sku, ts, (row_number() OVER ())::int AS x FROM cb_events LIMIT 3) q;
-- _state_combine called outside an aggregate (as Citus's coordinator may): a merge
SELECT _state_combine(a, b)::text = (SELECT recent_agg(sku, ts, 4) FROM cb_events WHERE shopper IN (1, 2))::text AS merged,
       _state_combine(a, NULL)::text = a::text AS with_null
FROM (SELECT (SELECT recent_agg(sku, ts, 4) FROM cb_events WHERE shopper = 1) AS a,
             (SELECT recent_agg(sku, ts, 4) FROM cb_events WHERE shopper = 2) AS b) q;

DROP VIEW cb_pairs;
DROP FUNCTION cb_differ(), cb_partial_plan(text);
DROP TABLE cb_events, cb_states;
