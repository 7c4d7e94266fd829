-- profile_columns(profile, spec): every trait column of a profile from one
-- call, equal to the per-column accessor expressions of the profile view.
SET search_path = personalize, public;
SET TimeZone = 'UTC';

-- ===== profiles holding every kind, each trait absent from some ==========

-- events at fixed times for most traits; windowed traits get events within
-- the last ~3.5 days, so their windows, read at now(), are not empty
CREATE TABLE pc_events (shopper int, sku text, cat text, ts timestamptz, recent_ts timestamptz,
                        amount numeric);
INSERT INTO pc_events
SELECT s, 'sku-' || ((s * 7 + x) % 13), 'cat-' || ((s + x * x) % 5),
       '2026-01-01'::timestamptz + (s * 37 + x * 11) * interval '1 min',
       now() - ((s * 13 + x * 29) % 5000) * interval '1 min',
       ((s * x) % 17) + 0.25 * (x % 3)
FROM generate_series(1, 300) s, generate_series(1, (s % 9) * 4) x;

CREATE TABLE pc_profiles AS
SELECT s AS shopper,
       profile_set(profile_set(profile_set(profile_set(profile_set(profile_set(profile_set(
       profile_set(profile_set(profile_set(profile_set(profile_set('{}',
           1, recent_agg(e.sku, e.ts, 5) FILTER (WHERE s % 2 = 0)),
           2, top_agg(e.cat, e.ts, 3, '2 days') FILTER (WHERE s % 3 <> 0)),
           3, windowed_agg(e.recent_ts, e.amount::float8) FILTER (WHERE s % 4 <> 1)),
           4, distinct_agg(e.sku, 6) FILTER (WHERE s % 5 <> 0)),
           5, first_agg(e.sku, e.ts) FILTER (WHERE s % 6 <> 0)),
           6, last_agg(e.cat, e.ts) FILTER (WHERE s % 7 <> 0)),
           7, session_agg(e.ts, e.cat, e.sku) FILTER (WHERE s % 8 <> 3)),
           8, metric_agg('sum', e.amount) FILTER (WHERE s % 2 = 1)),
           9, metric_agg('count', e.amount) FILTER (WHERE s % 10 <> 4)),
           10, metric_agg('min', e.amount)),
           11, metric_agg('max', e.amount) FILTER (WHERE s % 11 <> 0)),
           12, windowed_agg(e.recent_ts - interval '17 min') FILTER (WHERE s % 3 = 1)) AS p
FROM generate_series(0, 300) s LEFT JOIN pc_events e ON e.shopper = s
GROUP BY s;
INSERT INTO pc_profiles VALUES (1001, NULL), (1002, '{}');

-- the view's expressions, as _trait_columns() writes them, one per column
CREATE VIEW pc_old AS
SELECT shopper,
       recent_values(profile_get(p, 1, NULL::recent_state)) AS last_viewed,
       top_values(profile_get(p, 2, NULL::top_state)) AS affinity,
       coalesce(windowed_count(profile_get(p, 3, NULL::windowed_state), '1 hour'::interval), 0) AS spend_n_1h,
       coalesce(windowed_count(profile_get(p, 3, NULL::windowed_state), '24 hours'::interval), 0) AS spend_n_24h,
       coalesce(windowed_count(profile_get(p, 3, NULL::windowed_state), '7 days'::interval), 0) AS spend_n_7d,
       coalesce(windowed_count(profile_get(p, 3, NULL::windowed_state), '30 days'::interval), 0) AS spend_n_30d,
       coalesce(windowed_sum(profile_get(p, 3, NULL::windowed_state), '1 hour'::interval), 0) AS spend_1h,
       coalesce(windowed_sum(profile_get(p, 3, NULL::windowed_state), '24 hours'::interval), 0) AS spend_24h,
       coalesce(windowed_sum(profile_get(p, 3, NULL::windowed_state), '30 days'::interval), 0) AS spend_30d,
       coalesce(distinct_count(profile_get(p, 4, NULL::distinct_state)), 0) AS skus,
       event_value(profile_get(p, 5, NULL::first_state)) AS first_sku,
       event_time(profile_get(p, 5, NULL::first_state)) AS first_sku_at,
       event_value(profile_get(p, 6, NULL::last_state)) AS last_cat,
       event_time(profile_get(p, 6, NULL::last_state)) AS last_cat_at,
       session_info(profile_get(p, 7, NULL::session_state)) AS visit,
       metric_value(profile_get(p, 8, NULL::metric_state)) AS spent,
       coalesce(metric_count(profile_get(p, 8, NULL::metric_state)), 0) AS spent_events,
       coalesce(metric_count(profile_get(p, 9, NULL::metric_state)), 0) AS orders,
       metric_value(profile_get(p, 9, NULL::metric_state)) AS orders_value,
       metric_value(profile_get(p, 10, NULL::metric_state)) AS min_amount,
       metric_value(profile_get(p, 11, NULL::metric_state)) AS max_amount,
       coalesce(windowed_count(profile_get(p, 12, NULL::windowed_state), '1 hour'::interval), 0) AS views_1h,
       coalesce(windowed_count(profile_get(p, 12, NULL::windowed_state), '7 days'::interval), 0) AS views_7d,
       coalesce(metric_count(profile_get(p, 13, NULL::metric_state)), 0) AS never_count,
       metric_value(profile_get(p, 13, NULL::metric_state)) AS never_value,
       recent_values(profile_get(p, 14, NULL::recent_state)) AS never_recent,
       coalesce(distinct_count(profile_get(p, 15, NULL::distinct_state)), 0) AS never_distinct,
       coalesce(windowed_sum(profile_get(p, 16, NULL::windowed_state), '1 hour'::interval), 0) AS never_wsum,
       event_time(profile_get(p, 17, NULL::last_state)) AS never_at
FROM pc_profiles;

-- the same from one call per row
CREATE VIEW pc_new AS
SELECT p.shopper, c.*
FROM pc_profiles p
LEFT JOIN LATERAL profile_columns(p.p,
    '1:recent;2:top;3:wcount:3600000000;3:wcount:86400000000;3:wcount:604800000000;'
    '3:wcount:2592000000000;3:wsum:3600000000;3:wsum:86400000000;3:wsum:2592000000000;'
    '4:distinct;5:event_value;5:event_time;6:event_value;6:event_time;7:session;8:value;8:count;'
    '9:count;9:value;10:value;11:value;12:wcount:3600000000;12:wcount:604800000000;13:count;'
    '13:value;14:recent;15:distinct;16:wsum:3600000000;17:event_time')
    AS c(last_viewed text[], affinity text[], spend_n_1h bigint, spend_n_24h bigint,
         spend_n_7d bigint, spend_n_30d bigint, spend_1h double precision,
         spend_24h double precision, spend_30d double precision, skus bigint, first_sku text,
         first_sku_at timestamptz, last_cat text, last_cat_at timestamptz, visit jsonb,
         spent numeric, spent_events bigint, orders bigint, orders_value numeric,
         min_amount numeric, max_amount numeric, views_1h bigint, views_7d bigint,
         never_count bigint, never_value numeric, never_recent text[], never_distinct bigint,
         never_wsum double precision, never_at timestamptz) ON true;

-- every column of every row equal, as values and as text
SELECT count(*) AS profiles,
       count(*) FILTER (WHERE o.shopper IS NULL OR n.shopper IS NULL) AS unmatched,
       count(*) FILTER (WHERE ROW(o.*) IS DISTINCT FROM ROW(n.*)) AS differ,
       count(*) FILTER (WHERE o::text IS DISTINCT FROM n::text) AS differ_as_text
FROM pc_old o FULL JOIN pc_new n USING (shopper);

-- the traits are present in some profiles and absent from others
SELECT count(last_viewed) AS recent, count(affinity) AS top,
       count(*) FILTER (WHERE spend_n_30d > 0) AS windowed,
       count(*) FILTER (WHERE skus > 0) AS dist, count(first_sku) AS first,
       count(last_cat) AS last, count(visit) AS session, count(spent) AS sum,
       count(*) FILTER (WHERE orders > 0) AS count, count(min_amount) AS min,
       count(max_amount) AS max, count(*) FILTER (WHERE views_7d > 0) AS views,
       count(*) FILTER (WHERE never_count <> 0 OR never_value IS NOT NULL OR never_recent IS NOT NULL
                          OR never_distinct <> 0 OR never_wsum <> 0 OR never_at IS NOT NULL) AS never
FROM pc_new;

-- a few rows, the NULL profile and the empty one
SELECT shopper, last_viewed, affinity, skus, first_sku, first_sku_at, last_cat, last_cat_at,
       visit->>'dominant_category' AS visit_category, spent, spent_events, orders, orders_value,
       min_amount, max_amount, never_count, never_value
FROM pc_new WHERE shopper IN (0, 1, 2, 4, 6, 1001, 1002) ORDER BY shopper;

-- the same in a parallel plan
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT count(*) AS profiles, count(*) FILTER (WHERE o::text IS DISTINCT FROM n::text) AS differ_as_text
FROM pc_old o JOIN pc_new n USING (shopper);
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- ===== windows are read at now() ==========================================

SELECT count(*) AS profiles, count(w.s) AS with_state,
       count(*) FILTER (WHERE c.n_24h > 0) > 0 AS some_in_24h,
       bool_and(c.n_1h = coalesce(windowed_count(w.s, '1 hour', now()), 0)
                AND c.n_24h = coalesce(windowed_count(w.s, '24 hours', now()), 0)
                AND c.n_90m = coalesce(windowed_count(w.s, '90 minutes', now()), 0)
                AND c.n_30d = coalesce(windowed_count(w.s, '30 days', now()), 0)
                AND c.s_1h = coalesce(windowed_sum(w.s, '1 hour', now()), 0)
                AND c.s_3d = coalesce(windowed_sum(w.s, '3 days', now()), 0)) AS equal_at_now,
       bool_and(c.n_30d = coalesce(windowed_total_count(w.s), 0)) AS all_in_30d
FROM pc_profiles p,
     LATERAL (SELECT profile_get(p.p, 3, NULL::windowed_state) AS s) w,
     LATERAL profile_columns(p.p, '3:wcount:3600000000;3:wcount:86400000000;3:wcount:5400000000;'
                                  '3:wcount:2592000000000;3:wsum:3600000000;3:wsum:259200000000')
         AS c(n_1h bigint, n_24h bigint, n_90m bigint, n_30d bigint, s_1h float8, s_3d float8);

-- ===== the spec ===========================================================

-- columns in any order, one trait read by several columns, one column twice
SELECT c.*
FROM pc_profiles p,
     LATERAL profile_columns(p.p, '6:event_time;4:distinct;6:event_value;4:distinct;1:recent')
         AS c(at timestamptz, n bigint, v text, n_again bigint, r text[])
WHERE p.shopper = 22;

-- a spec that is not a constant may change from row to row
SELECT x.i, x.spec, c.*
FROM (VALUES (1, '1:recent;4:distinct'), (2, '2:top;9:count'), (3, '1:recent;4:distinct'),
             (4, '14:recent;13:count')) x(i, spec)
     CROSS JOIN LATERAL profile_columns((SELECT p FROM pc_profiles WHERE shopper = 22), x.spec)
         AS c(vals text[], n bigint)
ORDER BY x.i;

-- ===== errors =============================================================

SELECT * FROM profile_columns(NULL, '') AS c(a text[]);
SELECT * FROM profile_columns(NULL, '1:recent;') AS c(a text[]);
SELECT * FROM profile_columns(NULL, 'x:recent') AS c(a text[]);
SELECT * FROM profile_columns(NULL, '01:recent') AS c(a text[]);
SELECT * FROM profile_columns(NULL, '2147483648:recent') AS c(a text[]);
SELECT * FROM profile_columns(NULL, '1') AS c(a text[]);
SELECT * FROM profile_columns(NULL, '1:nosuch') AS c(a text[]);
SELECT * FROM profile_columns(NULL, '1: recent') AS c(a text[]);
SELECT * FROM profile_columns(NULL, '1:recent:3') AS c(a text[]);
SELECT * FROM profile_columns(NULL, '1:wcount') AS c(a bigint);
SELECT * FROM profile_columns(NULL, '1:wsum:0') AS c(a float8);
SELECT * FROM profile_columns(NULL, '1:wcount:1h') AS c(a bigint);
SELECT * FROM profile_columns(NULL, '1:wcount:3162240000000001') AS c(a bigint);
SELECT * FROM profile_columns(NULL, '1:wcount:60000000:1') AS c(a bigint);
SELECT * FROM profile_columns(NULL, '1:recent;1:top') AS c(a text[], b text[]);
SELECT * FROM profile_columns(NULL, '5:event_value;5:count') AS c(a text, b bigint);
SELECT * FROM profile_columns(NULL, NULL) AS c(a text[]);
-- the column definition list: one column per entry, of the accessor's type
SELECT * FROM profile_columns(NULL, '1:recent;2:top') AS c(a text[]);
SELECT * FROM profile_columns(NULL, '1:recent') AS c(a text[], b text[]);
SELECT * FROM profile_columns(NULL, '1:recent') AS c(a text);
SELECT * FROM profile_columns(NULL, '1:recent;9:count') AS c(a text[], orders integer);
SELECT * FROM profile_columns(NULL, '8:value') AS c(spent numeric(10, 2));
SELECT * FROM profile_columns(NULL, '3:wsum:60000000') AS c(s real);
SELECT * FROM profile_columns(NULL, '7:session') AS c(s json);
-- not in FROM with a column definition list
SELECT profile_columns(NULL, '1:recent');
-- a trait holding a state of another kind
SELECT c.* FROM pc_profiles p, LATERAL profile_columns(p.p, '1:count') AS c(orders bigint)
WHERE p.shopper = 2;
SELECT c.* FROM pc_profiles p, LATERAL profile_columns(p.p, '4:distinct;5:recent') AS c(n bigint, r text[])
WHERE p.shopper = 2;
SELECT c.* FROM pc_profiles p, LATERAL profile_columns(p.p, '6:wcount:3600000000') AS c(n bigint)
WHERE p.shopper = 2;
-- ... but not where the profile does not hold the trait
SELECT c.* FROM pc_profiles p, LATERAL profile_columns(p.p, '1:count') AS c(orders bigint)
WHERE p.shopper = 1;

-- ===== clean up ===========================================================

DROP VIEW IF EXISTS pc_new, pc_old;
DROP TABLE IF EXISTS pc_profiles, pc_events;
