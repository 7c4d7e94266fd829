-- bench/checks.sql: do the aggregates give the answers of the built-in
-- queries they are timed against?  bench/run first creates one view per
-- benchmarked query (view recent_ours is bench/recent.ours.sql, view
-- first_builtin_distinct_on is bench/first.builtin-distinct-on.sql, ...),
-- so what is checked is exactly what is timed.  Timestamps are unique per
-- shopper (bench/setup.sql), so first/last/recent have no ties.
-- One row per check: check | verdict (ok, FAIL or info) | detail.
--
-- The views are read with a serial plan; at the end, every aggregate's
-- answers under a parallel plan (partial states merged) are compared with
-- the serial ones.
SET max_parallel_workers_per_gather = 0;

-- recent_agg keeps distinct values, so only the distinct form is the same
-- answer; the array_agg form must at least agree on the newest view.
SELECT 'recent_agg = distinct-recent built-in, every shopper',
       CASE WHEN differ = 0 AND shoppers > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', differ, shoppers)
FROM (SELECT count(*) AS shoppers,
             count(*) FILTER (WHERE o.recent_skus IS DISTINCT FROM b.recent_skus) AS differ
      FROM recent_ours AS o FULL JOIN recent_builtin_distinct AS b USING (shopper)) AS c
UNION ALL
SELECT 'recent_agg newest = array_agg newest, every shopper',
       CASE WHEN differ = 0 AND shoppers > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', differ, shoppers)
FROM (SELECT count(*) AS shoppers,
             count(*) FILTER (WHERE o.recent_skus[1] IS DISTINCT FROM b.recent_skus[1]) AS differ
      FROM recent_ours AS o FULL JOIN recent_builtin AS b USING (shopper)) AS c;

-- :at is a UTC midnight, so every window starts on a bucket edge: exact.
SELECT 'windowed_count = count(*) FILTER, 4 windows, every shopper',
       CASE WHEN differ = 0 AND shoppers > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', differ, shoppers)
FROM (SELECT count(*) AS shoppers,
             count(*) FILTER (WHERE (o.last_hour, o.last_day, o.last_week, o.last_month)
                         IS DISTINCT FROM (b.last_hour, b.last_day, b.last_week, b.last_month)) AS differ
      FROM windowed_ours AS o FULL JOIN windowed_builtin AS b USING (shopper)) AS c;

-- HyperLogLog at p = 12: 1.6 % standard error; the target is 5 % in total.
SELECT 'distinct_count within 5 % of count(DISTINCT), summed over shoppers',
       CASE WHEN abs(sum(o.products_viewed)::float8 / sum(b.products_viewed) - 1) <= 0.05
                 AND count(*) = count(o.products_viewed) AND count(*) = count(b.products_viewed)
            THEN 'ok' ELSE 'FAIL' END,
       format('sum of estimates / sum of exact counts = %s; per shopper |error|: mean %s %%, p99 %s %%, max %s %%',
              round(sum(o.products_viewed)::numeric / sum(b.products_viewed), 4),
              round(avg(err)::numeric, 2),
              round((percentile_cont(0.99) WITHIN GROUP (ORDER BY err))::numeric, 2),
              round(max(err)::numeric, 2))
FROM distinct_ours AS o FULL JOIN distinct_builtin AS b USING (shopper),
     LATERAL (SELECT 100.0 * abs(o.products_viewed - b.products_viewed) / b.products_viewed) AS e(err);

-- Timestamps are unique per shopper: no ties.
SELECT 'first_agg = built-in (array_agg), every shopper',
       CASE WHEN differ = 0 AND shoppers > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', differ, shoppers)
FROM (SELECT count(*) AS shoppers,
             count(*) FILTER (WHERE o.first_sku IS DISTINCT FROM b.first_sku) AS differ
      FROM first_ours AS o FULL JOIN first_builtin AS b USING (shopper)) AS c;
SELECT 'first_agg = built-in (DISTINCT ON), every shopper',
       CASE WHEN differ = 0 AND shoppers > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', differ, shoppers)
FROM (SELECT count(*) AS shoppers,
             count(*) FILTER (WHERE o.first_sku IS DISTINCT FROM b.first_sku) AS differ
      FROM first_ours AS o FULL JOIN first_builtin_distinct_on AS b USING (shopper)) AS c;
SELECT 'last_agg = built-in (array_agg), every shopper',
       CASE WHEN differ = 0 AND shoppers > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', differ, shoppers)
FROM (SELECT count(*) AS shoppers,
             count(*) FILTER (WHERE o.last_sku IS DISTINCT FROM b.last_sku) AS differ
      FROM last_ours AS o FULL JOIN last_builtin AS b USING (shopper)) AS c;
SELECT 'last_agg = built-in (DISTINCT ON), every shopper',
       CASE WHEN differ = 0 AND shoppers > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', differ, shoppers)
FROM (SELECT count(*) AS shoppers,
             count(*) FILTER (WHERE o.last_sku IS DISTINCT FROM b.last_sku) AS differ
      FROM last_ours AS o FULL JOIN last_builtin_distinct_on AS b USING (shopper)) AS c;

-- session_agg's current session is exact while it lasts less than its 24-hour
-- horizon, and its dominant category while it has no more than 16 categories
-- (certain when it has no more than 16 events).
WITH j AS (
    SELECT o.session_start AS o_start, o.last_activity AS o_last, o.events AS o_events,
           o.dominant_category AS o_category, o.last_item AS o_item,
           b.session_start AS b_start, b.last_activity AS b_last, b.events AS b_events,
           b.dominant_category AS b_category, b.last_item AS b_item
    FROM session_ours AS o FULL JOIN session_builtin AS b USING (shopper)
)
SELECT 'session_agg = built-in: start, last activity, events, last item (sessions < 24 h)',
       CASE WHEN count(*) FILTER (WHERE (o_start, o_last, o_events, o_item)
                                  IS DISTINCT FROM (b_start, b_last, b_events, b_item)) = 0
                 AND count(*) > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ',
              count(*) FILTER (WHERE (o_start, o_last, o_events, o_item)
                               IS DISTINCT FROM (b_start, b_last, b_events, b_item)),
              count(*))
FROM j WHERE b_last - b_start < interval '24 hours' OR b_last IS NULL
UNION ALL
SELECT 'session_agg = built-in: dominant category (sessions < 24 h, <= 16 events)',
       CASE WHEN count(*) FILTER (WHERE o_category IS DISTINCT FROM b_category) = 0
                 AND count(*) > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', count(*) FILTER (WHERE o_category IS DISTINCT FROM b_category), count(*))
FROM j WHERE b_last - b_start < interval '24 hours' AND b_events <= 16
UNION ALL
SELECT 'session_agg vs built-in: sessions of 24 h or more (not exact by design)', 'info',
       format('%s shoppers; same start %s, same events %s, same last item %s',
              count(*), count(*) FILTER (WHERE o_start = b_start),
              count(*) FILTER (WHERE o_events = b_events), count(*) FILTER (WHERE o_item = b_item))
FROM j WHERE b_last - b_start >= interval '24 hours';

-- Every answer again under a parallel plan: two workers, each folding a share
-- of the events, and the leader merging their partial states.  Exact kinds
-- must not change; top_agg's summary may.
CREATE VIEW answers AS
SELECT shopper,
       recent_values(recent_agg(sku, ts, 10))                 AS recent,
       top_values(top_agg(category, ts, 10, '7 days'))        AS top10,
       top_values(top_agg(category, ts, 50, '7 days'), 10)    AS top50,
       top_values(top_agg(category, ts, 1000, '7 days'), 10)  AS top1000,
       windowed_count(windowed_agg(ts), '1 hour', :at)        AS last_hour,
       windowed_count(windowed_agg(ts), '24 hours', :at)      AS last_day,
       windowed_count(windowed_agg(ts), '7 days', :at)        AS last_week,
       windowed_count(windowed_agg(ts), '30 days', :at)       AS last_month,
       distinct_count(distinct_agg(product_id))               AS products,
       event_value(first_agg(sku, ts))                        AS first_sku,
       event_value(last_agg(sku, ts))                         AS last_sku,
       session_start(session_agg(ts, category, sku))          AS session_start,
       session_last_activity(session_agg(ts, category, sku))  AS last_activity,
       session_events(session_agg(ts, category, sku))         AS session_events,
       session_dominant_category(session_agg(ts, category, sku)) AS dominant_category,
       session_last_item(session_agg(ts, category, sku))      AS last_item,
       session_info(session_agg(ts, category, sku))           AS session_state
FROM events
GROUP BY shopper;
CREATE TEMP TABLE answers_serial AS SELECT * FROM answers;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0.001;
SET min_parallel_table_scan_size = 0;
CREATE UNLOGGED TABLE answers_parallel AS SELECT * FROM answers;
SET max_parallel_workers_per_gather = 0;

-- The current session is exact while it lasts less than its 24-hour
-- horizon; longer ones, and the older sessions a state keeps (session_info
-- shows them), may differ between splits by design.
WITH j AS (
    SELECT (s.recent, s.top1000, s.last_hour, s.last_day, s.last_week, s.last_month,
            s.products, s.first_sku, s.last_sku) AS s_exact,
           (p.recent, p.top1000, p.last_hour, p.last_day, p.last_week, p.last_month,
            p.products, p.first_sku, p.last_sku) AS p_exact,
           s.last_activity - s.session_start < interval '24 hours' AS short_session,
           (s.session_start, s.last_activity, s.session_events, s.dominant_category, s.last_item)
               AS s_session,
           (p.session_start, p.last_activity, p.session_events, p.dominant_category, p.last_item)
               AS p_session,
           s.session_state AS s_state, p.session_state AS p_state
    FROM answers_serial AS s FULL JOIN answers_parallel AS p USING (shopper)
)
SELECT 'parallel plan = serial plan: recent, top (N = 1000), windowed, distinct, first, last',
       CASE WHEN count(*) FILTER (WHERE s_exact IS DISTINCT FROM p_exact) = 0 AND count(*) > 0
            THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', count(*) FILTER (WHERE s_exact IS DISTINCT FROM p_exact), count(*))
FROM j
UNION ALL
SELECT 'parallel plan = serial plan: current session (sessions < 24 h)',
       CASE WHEN count(*) FILTER (WHERE s_session IS DISTINCT FROM p_session) = 0 AND count(*) > 0
            THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', count(*) FILTER (WHERE s_session IS DISTINCT FROM p_session), count(*))
FROM j WHERE short_session
UNION ALL
SELECT 'parallel plan vs serial plan: whole session state (not exact by design)', 'info',
       format('%s shoppers differ: %s with a current session of 24 h or more, %s only in older kept sessions',
              count(*) FILTER (WHERE s_state IS DISTINCT FROM p_state),
              count(*) FILTER (WHERE s_state IS DISTINCT FROM p_state AND NOT short_session),
              count(*) FILTER (WHERE s_state IS DISTINCT FROM p_state AND short_session
                                     AND s_session IS NOT DISTINCT FROM p_session))
FROM j;

-- top_agg keeps at most N values (a Space-Saving summary), so it is exact
-- only while a shopper has no more than N categories (none has, at 10 M
-- events).  A state wide enough for every category (N = 1000 > 200) must
-- give exactly the built-in top 10.  How close narrower states get is
-- reported under both plans: a summary's answer depends on the order in
-- which events and partial states are folded in.
CREATE TEMP TABLE top_exact AS SELECT * FROM top_builtin;
WITH categories AS (
    SELECT shopper, count(DISTINCT category) AS n FROM events GROUP BY shopper
), j AS (
    SELECT s.top10, s.top1000, e.top_categories AS exact, categories.n
    FROM answers_serial AS s FULL JOIN top_exact AS e USING (shopper) JOIN categories USING (shopper)
)
SELECT 'top_agg(category, ts, 1000, ''7 days'') top 10 = built-in, every shopper',
       CASE WHEN count(*) FILTER (WHERE top1000 IS DISTINCT FROM exact) = 0 AND count(*) > 0
            THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', count(*) FILTER (WHERE top1000 IS DISTINCT FROM exact), count(*))
FROM j
UNION ALL
SELECT 'top_agg(category, ts, 10, ''7 days'') = built-in, shoppers with <= 10 categories',
       CASE WHEN count(*) = 0 THEN 'info'
            WHEN count(*) FILTER (WHERE top10 IS DISTINCT FROM exact) = 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s shoppers differ', count(*) FILTER (WHERE top10 IS DISTINCT FROM exact), count(*))
FROM j WHERE n <= 10;

SELECT 'top_agg vs built-in top 10: ' || label || ' (approximate)', 'info',
       format('%s shoppers with >= 10 categories: same top-10 list %s %%, same favourite %s %%, top-10 overlap %s %% on average',
              count(*),
              round(100.0 * avg((ours = exact)::int), 1),
              round(100.0 * avg((ours[1] = exact[1])::int), 1),
              round(10.0 * avg((SELECT count(*) FROM unnest(ours) AS v WHERE v = ANY (exact))), 1))
FROM (SELECT e.top_categories AS exact, s.top10, s.top50, p.top10 AS p_top10, p.top50 AS p_top50
      FROM top_exact AS e JOIN answers_serial AS s USING (shopper)
           JOIN answers_parallel AS p USING (shopper)
      WHERE cardinality(e.top_categories) = 10) AS j,
     LATERAL (VALUES (1, 'N = 10, serial plan', top10), (2, 'N = 10, parallel plan', p_top10),
                     (3, 'N = 50 read 10, serial plan', top50),
                     (4, 'N = 50 read 10, parallel plan', p_top50)) AS v(ord, label, ours)
GROUP BY ord, label
ORDER BY ord;
