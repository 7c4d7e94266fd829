-- Scans of the profile view read only the trait columns the query names:
-- the planner hook of src/profile_scan.c writes '-' before each entry of
-- profile_columns()' spec that no part of the plan reads.  Every query here
-- gives the same rows with personalize.view_projection on and off, and
-- EXPLAIN shows which entries a plan skipped.
SET search_path = personalize, public;
SET TimeZone = 'UTC';

-- ===== profiles holding every kind (as in profile_columns.sql) ============

CREATE TABLE vp_events (shopper int, sku text, cat text, ts timestamptz, recent_ts timestamptz,
                        amount numeric);
INSERT INTO vp_events
SELECT s, 'sku-' || ((s * 7 + x) % 13), 'cat-' || ((s + x * x) % 5),
       '2026-01-01'::timestamptz + (s * 37 + x * 11) * interval '1 min',
       now() - ((s * 13 + x * 29) % 5000) * interval '1 min',
       ((s * x) % 17) + 0.25 * (x % 3)
FROM generate_series(1, 300) s, generate_series(1, (s % 9) * 4) x;

CREATE TABLE vp_profiles AS
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
FROM generate_series(0, 300) s LEFT JOIN vp_events e ON e.shopper = s
GROUP BY s;
INSERT INTO vp_profiles VALUES (1001, NULL), (1002, '{}');

-- the same from one call per row
CREATE VIEW vp_view AS
SELECT p.shopper, c.*
FROM vp_profiles p
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

-- the rows of a query with the projection on, less those with it off, and
-- the other way round: 0 when both are the same multiset.  The planner's
-- own plan (both hooks off) is the reference; the query runs with the
-- projection on and off, each with the custom scan on and off.
CREATE FUNCTION vp_diff(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint := 0;
    m bigint;
    setting record;
BEGIN
    SET LOCAL personalize.view_projection = off;
    SET LOCAL personalize.view_custom_scan = off;
    EXECUTE format('CREATE TEMP TABLE vp_off AS %s', q);
    FOR setting IN SELECT * FROM (VALUES ('on', 'on'), ('on', 'off'), ('off', 'on')) v(projection, custom) LOOP
        PERFORM set_config('personalize.view_projection', setting.projection, true);
        PERFORM set_config('personalize.view_custom_scan', setting.custom, true);
        EXECUTE format('CREATE TEMP TABLE vp_on AS %s', q);
        SELECT count(*) INTO m FROM ((TABLE vp_on EXCEPT ALL TABLE vp_off)
                                     UNION ALL (TABLE vp_off EXCEPT ALL TABLE vp_on)) d;
        n := n + m;
        DROP TABLE vp_on;
    END LOOP;
    DROP TABLE vp_off;
    RETURN n;
END $$;

-- the plan's nodes that compute the view's columns: Custom Scans
-- (ProfileColumns), and Function Scans of profile_columns() left as they were
CREATE FUNCTION vp_nodes(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    nodes text[] := '{}';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        IF line ~ 'Custom Scan \(ProfileColumns\)|Function Scan on profile_columns' THEN
            nodes := nodes || regexp_replace(line, '^[ ->]*', '');
        END IF;
    END LOOP;
    RETURN array_to_string(nodes, ', ');
END $$;

-- the entries of the spec a plan's call reads, and how many it skips
-- (from EXPLAIN VERBOSE)
CREATE FUNCTION vp_spec(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    spec text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q LOOP
        IF line ~ 'profile_columns\(' THEN
            spec := substring(line FROM $re$profile_columns\([^']*'([^']*)'$re$);
            IF spec !~ '(^|;)-' THEN
                RETURN format('reads all %s', cardinality(string_to_array(spec, ';')));
            END IF;
            RETURN format('reads %s; skips %s',
                          coalesce((SELECT string_agg(e, ';') FROM unnest(string_to_array(spec, ';')) e
                                     WHERE e NOT LIKE '-%'), 'nothing'),
                          (SELECT count(*) FROM unnest(string_to_array(spec, ';')) e WHERE e LIKE '-%'));
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- ===== the same rows, whatever the query reads ============================

SELECT q, vp_diff(q) AS differ
FROM unnest(ARRAY[
    $q$SELECT shopper, orders FROM vp_view$q$,
    $q$SELECT shopper, affinity[1] AS top FROM vp_view$q$,
    $q$SELECT affinity[1] AS top, count(*) FROM vp_view GROUP BY 1$q$,
    $q$SELECT shopper FROM vp_view WHERE spent > 20$q$,
    $q$SELECT shopper, last_cat FROM vp_view WHERE spend_n_30d > 0 AND first_sku LIKE 'sku-1%'$q$,
    $q$SELECT shopper, visit->>'dominant_category' AS c, skus FROM vp_view ORDER BY skus DESC, shopper LIMIT 20$q$,
    $q$SELECT v.shopper, (SELECT v.orders + 1) AS o FROM vp_view v$q$,
    $q$SELECT v::text AS r FROM vp_view v$q$,
    $q$SELECT a.shopper, b.shopper AS other FROM vp_view a JOIN vp_view b ON a.last_cat = b.last_cat AND a.shopper < b.shopper WHERE a.orders > 30$q$,
    $q$SELECT shopper, coalesce(max_amount, min_amount) AS m FROM vp_view WHERE never_count = 0$q$,
    $q$SELECT count(*) FROM vp_view$q$,
    $q$SELECT shopper, spend_1h, spend_24h, views_7d FROM vp_view WHERE last_viewed IS NOT NULL$q$,
    $q$SELECT p.shopper, v.orders FROM vp_profiles p LEFT JOIN vp_view v ON v.shopper = p.shopper AND v.orders > 3$q$,
    $q$SELECT shopper, orders FROM vp_view WHERE shopper IN (SELECT shopper FROM vp_view WHERE skus > 5)$q$,
    $q$SELECT orders FROM vp_view UNION ALL SELECT skus FROM vp_view$q$,
    $q$WITH x AS MATERIALIZED (SELECT * FROM vp_view) SELECT shopper, orders FROM x$q$,
    $q$SELECT shopper, to_jsonb(v) -> 'affinity' AS a FROM vp_view v$q$,
    $q$SELECT g, (SELECT v.orders FROM vp_view v WHERE v.shopper = g) AS o FROM generate_series(1, 40) g$q$,
    $q$SELECT g, x.skus FROM generate_series(1, 40) g, LATERAL (SELECT v.skus FROM vp_view v WHERE v.shopper IN (g, g + 1) ORDER BY 1 LIMIT 1) x$q$,
    $q$SELECT p.shopper, x.o FROM vp_profiles p LEFT JOIN (SELECT v.shopper, coalesce(v.orders, -1) AS o FROM vp_view v WHERE v.skus > 3) x ON x.shopper = p.shopper$q$,
    $q$SELECT p.shopper, c.orders FROM vp_profiles p JOIN LATERAL profile_columns(p.p, '9:count;8:value') AS c(orders bigint, spent numeric) ON c.spent > p.shopper / 10$q$,
    $q$SELECT p.shopper, c.orders FROM vp_profiles p LEFT JOIN LATERAL profile_columns(p.p, '9:count;8:value') AS c(orders bigint, spent numeric) ON c.spent > p.shopper / 10$q$
]) q;

-- in a parallel plan too
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT vp_diff('SELECT affinity[1] AS top, sum(orders) FROM vp_view GROUP BY 1') AS differ;
-- the custom scan runs in the parallel workers, under the Gather
EXPLAIN (COSTS OFF) SELECT affinity[1] AS top, sum(orders) FROM vp_view GROUP BY 1;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- ===== the plan: a Custom Scan (ProfileColumns) for each call ==============

-- the view's Nested Loop over a Function Scan becomes one Custom Scan
SELECT vp_nodes('SELECT shopper, orders FROM vp_view');
SELECT vp_nodes('SELECT a.shopper FROM vp_view a JOIN vp_view b ON a.last_cat = b.last_cat');
SELECT vp_nodes('SELECT shopper FROM vp_view WHERE spent > 20');
-- off: as PostgreSQL plans the view
SET personalize.view_custom_scan = off;
SELECT vp_nodes('SELECT shopper, orders FROM vp_view');
RESET personalize.view_custom_scan;
-- a call whose column definition list does not fit fails as the call would, on its first row
SELECT vp_nodes($q$SELECT c.* FROM vp_profiles p, LATERAL profile_columns(p.p, '9:count') AS c(orders numeric)$q$);
SELECT c.* FROM vp_profiles p, LATERAL profile_columns(p.p, '9:count') AS c(orders numeric);
-- a spec that is not valid: the call's ERROR, when the first row is computed,
-- not when planned (EXPLAIN) nor when no row is
EXPLAIN (COSTS OFF) SELECT c.* FROM vp_profiles p, LATERAL profile_columns(p.p, '9:nothing') AS c(orders bigint);
SELECT c.* FROM vp_profiles p, LATERAL profile_columns(p.p, '9:nothing') AS c(orders bigint) WHERE p.shopper < 0;
SELECT c.* FROM vp_profiles p, LATERAL profile_columns(p.p, '9:nothing') AS c(orders bigint);
-- a call that does not read the outer row is computed once by the Function
-- Scan, and one with a volatile argument too: both are left as they are
SELECT vp_nodes($q$SELECT g, c.* FROM generate_series(1, 3) g, LATERAL profile_columns('{}', '9:count') AS c(orders bigint)$q$);
SELECT vp_nodes($q$SELECT c.* FROM vp_profiles p, LATERAL profile_columns(CASE WHEN random() < 2 THEN p.p END, '9:count') AS c(orders bigint)$q$);
-- a function of the same name and arity that is not this library's is not
-- rewritten nor run as profile_columns() (it was: its jsonb read as a profile)
CREATE FUNCTION profile_columns(x jsonb, spec text) RETURNS record STABLE LANGUAGE sql
    AS $$ SELECT ROW(length(spec)::bigint) $$;
CREATE TABLE vp_json AS SELECT g, jsonb_build_object('a', g) AS j FROM generate_series(1, 3) g;
SELECT vp_nodes($q$SELECT g, c.* FROM vp_json, LATERAL profile_columns(vp_json.j, '9:count') AS c(n bigint)$q$);
SELECT vp_spec($q$SELECT g FROM vp_json, LATERAL profile_columns(vp_json.j, '9:count;9:count') AS c(n bigint, m bigint)$q$);
SELECT g, c.* FROM vp_json, LATERAL profile_columns(vp_json.j, '9:count') AS c(n bigint) ORDER BY g;
DROP TABLE vp_json;
DROP FUNCTION profile_columns(jsonb, text);
-- EXECUTE on profile_columns() is checked, as the Function Scan checks it
CREATE ROLE vp_reader;
GRANT SELECT ON vp_view TO vp_reader;
REVOKE EXECUTE ON FUNCTION profile_columns(profile, text) FROM PUBLIC;
SET ROLE vp_reader;
SELECT count(orders) FROM vp_view;                                          -- ERROR
SET personalize.view_custom_scan = off;
SELECT count(orders) FROM vp_view;                                          -- ERROR
RESET personalize.view_custom_scan;
RESET ROLE;
GRANT EXECUTE ON FUNCTION profile_columns(profile, text) TO PUBLIC;
SET ROLE vp_reader;
SELECT count(orders) > 0 AS reads_again FROM vp_view;
RESET ROLE;
REVOKE SELECT ON vp_view FROM vp_reader;
DROP ROLE vp_reader;
-- EXPLAIN shows the call, the join's type and its filters
EXPLAIN (VERBOSE, COSTS OFF)
SELECT p.shopper, c.orders FROM vp_profiles p LEFT JOIN LATERAL profile_columns(p.p, '9:count;8:value') AS c(orders bigint, spent numeric) ON c.spent > p.shopper / 10 WHERE p.shopper < 5 AND c.orders IS DISTINCT FROM 3;
-- EXPLAIN ANALYZE counts the rows, and those the call's filter removed
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT shopper FROM vp_view WHERE shopper % 3 = 0 AND coalesce(orders, 0) >= 0;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT p.shopper FROM vp_profiles p JOIN LATERAL profile_columns(p.p, '9:count') AS c(orders bigint) ON c.orders > p.shopper % 7;

-- a whole-row reference to the call: UPDATE ... FROM keeps a copy of each
-- joined row of the view, which the custom scan projects
BEGIN;
WITH u AS (UPDATE vp_events e SET amount = amount FROM vp_view v
           WHERE v.shopper = e.shopper AND v.orders > 30 RETURNING e.shopper, v.orders, v.affinity)
SELECT count(*), count(DISTINCT shopper), sum(orders), count(affinity) FROM u;
SET LOCAL personalize.view_custom_scan = off;
WITH u AS (UPDATE vp_events e SET amount = amount FROM vp_view v
           WHERE v.shopper = e.shopper AND v.orders > 30 RETURNING e.shopper, v.orders, v.affinity)
SELECT count(*), count(DISTINCT shopper), sum(orders), count(affinity) FROM u;
ROLLBACK;

-- a scrollable cursor reads backward as well as forward
BEGIN;
DECLARE vp_cur SCROLL CURSOR FOR SELECT shopper, orders, skus FROM vp_view WHERE shopper BETWEEN 10 AND 14;
FETCH ALL vp_cur;
FETCH BACKWARD 2 vp_cur;
FETCH ABSOLUTE 2 vp_cur;
COMMIT;

-- ===== which entries a plan reads =========================================

-- one column: the other 28 are skipped
SELECT vp_spec('SELECT orders FROM vp_view');
-- a column read only by a filter is read
SELECT vp_spec('SELECT shopper FROM vp_view WHERE spent > 20');
-- the whole row reads every entry
SELECT vp_spec('SELECT v FROM vp_view v');
-- three columns of one trait and one of another, in the select list and a join
SELECT vp_spec('SELECT v.spend_1h, v.spend_24h FROM vp_profiles p JOIN vp_view v ON v.spend_n_7d = p.shopper AND v.orders > 2');
-- no trait column: every entry skipped, no state decoded
SELECT vp_spec('SELECT count(*) FROM vp_view');
-- off: the spec as the view wrote it
SET personalize.view_projection = off;
SELECT vp_spec('SELECT orders FROM vp_view');
RESET personalize.view_projection;

-- a prepared statement keeps its plan's spec, and its answers
PREPARE vp_top AS SELECT affinity[1] AS top, count(*) FROM vp_view GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3;
EXECUTE vp_top;
EXECUTE vp_top;
DEALLOCATE vp_top;

-- ===== a spec written by hand =============================================

-- '-' before an entry: NULL, whatever the profile holds
SELECT c.* FROM vp_profiles p,
       LATERAL profile_columns(p.p, '9:count;-9:value;-1:recent;2:top')
           AS c(orders bigint, orders_value numeric, last_viewed text[], affinity text[])
WHERE p.shopper = 2;
-- a skipped entry is still checked
SELECT * FROM profile_columns('{}', '-9:nothing') AS c(x bigint);
SELECT * FROM profile_columns('{}', '-') AS c(x bigint);
