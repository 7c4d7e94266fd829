-- A parallel plan (partial aggregates in workers, serialized, deserialized
-- and combined in the leader) gives the same states as a serial plan.
-- Events span 20 days, so session states prune old sessions: for them the
-- current session is compared (older sessions at the 24-hour horizon may
-- keep fewer events, see src/session.h).
BEGIN;
SET LOCAL search_path = personalize, public;
SET LOCAL TimeZone = 'UTC';
SELECT plan(16);

CREATE TABLE par_events (shopper int, v text, id bigint, c text, ts timestamptz, w float8);
SELECT setseed(0.42);
INSERT INTO par_events
SELECT floor(200 * power(random(), 2))::int, 'sku-' || (n % 97), n % 1013, 'cat-' || (n % 7),
       '2026-06-01'::timestamptz - interval '20 days' * power(random(), 3), n % 10
FROM generate_series(1, 60000) n;
ANALYZE par_events;

-- Everything each kind needs, per shopper, as text (top_state compared apart).
CREATE FUNCTION par_states() RETURNS TABLE (shopper int, recent text, windowed text, dist text,
    dist_id text, first text, last text, sess text, top top_state, whole_top top_state)
LANGUAGE sql AS $$
  SELECT shopper, recent_agg(v, ts, 10)::text, windowed_agg(ts, w)::text, distinct_agg(v)::text,
         distinct_agg(id, 10)::text, first_agg(v, ts)::text, last_agg(id, ts)::text,
         session_info(session_agg(ts, c, v))::text, top_agg(c, ts, 10, '2 days', w), NULL::top_state
  FROM par_events GROUP BY shopper
$$;

SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL parallel_leader_participation = off;

SET LOCAL max_parallel_workers_per_gather = 2;
CREATE TEMP TABLE plan_lines (line text);
DO $$ DECLARE r record; BEGIN
  FOR r IN EXPLAIN (COSTS OFF) SELECT shopper, recent_agg(v, ts, 10), session_agg(ts, c, v)
                                FROM par_events GROUP BY shopper LOOP
    INSERT INTO plan_lines VALUES (r."QUERY PLAN");
  END LOOP; END $$;
SELECT ok(EXISTS (SELECT 1 FROM plan_lines WHERE line ~ 'Partial (Hash|Group)?Aggregate|Partial HashAggregate|Partial GroupAggregate'),
          'EXPLAIN shows a partial aggregate');
SELECT ok(EXISTS (SELECT 1 FROM plan_lines WHERE line ~ 'Gather'), 'EXPLAIN shows a Gather');

CREATE TEMP TABLE par AS SELECT * FROM par_states();
SET LOCAL max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE ser AS SELECT * FROM par_states();

SELECT is((SELECT count(*) FROM par), (SELECT count(*) FROM ser), 'same number of shoppers');
SELECT is((SELECT count(*) FROM par), 200::bigint, 'every shopper present');
SELECT is((SELECT count(*) FROM par JOIN ser USING (shopper) WHERE par.recent <> ser.recent), 0::bigint, 'recent_agg: parallel = serial');
SELECT is((SELECT count(*) FROM par JOIN ser USING (shopper) WHERE par.windowed <> ser.windowed), 0::bigint, 'windowed_agg: parallel = serial');
SELECT is((SELECT count(*) FROM par JOIN ser USING (shopper) WHERE par.dist <> ser.dist), 0::bigint, 'distinct_agg(text): parallel = serial');
SELECT is((SELECT count(*) FROM par JOIN ser USING (shopper) WHERE par.dist_id <> ser.dist_id), 0::bigint, 'distinct_agg(bigint, 10): parallel = serial');
SELECT is((SELECT count(*) FROM par JOIN ser USING (shopper) WHERE par.first <> ser.first), 0::bigint, 'first_agg: parallel = serial');
SELECT is((SELECT count(*) FROM par JOIN ser USING (shopper) WHERE par.last <> ser.last), 0::bigint, 'last_agg: parallel = serial');
SELECT is((SELECT count(*) FROM par JOIN ser USING (shopper) WHERE par.sess <> ser.sess
              AND (ser.sess::jsonb ->> 'duration_seconds')::float8 < 86400), 0::bigint,
          'session_agg: parallel = serial (current sessions shorter than the 24-hour horizon)');
SELECT is((SELECT count(*) FROM par JOIN ser USING (shopper)
           WHERE top_values(par.top) <> top_values(ser.top)
              OR EXISTS (SELECT 1 FROM unnest(top_weights(par.top), top_weights(ser.top)) u(a, b)
                         WHERE abs(a - b) > 1e-9 * greatest(abs(a), abs(b)))), 0::bigint,
          'top_agg: parallel = serial (weights within 1e-9)');

-- merge_agg over per-shopper states also runs in parallel and equals the global aggregate
CREATE TABLE par_states_stored AS
  SELECT shopper, recent_agg(v, ts, 10) r, distinct_agg(v) d, windowed_agg(ts, w) wi, last_agg(id, ts) l
  FROM par_events GROUP BY shopper;
ANALYZE par_states_stored;
SET LOCAL max_parallel_workers_per_gather = 2;
SELECT is((SELECT merge_agg(r) FROM par_states_stored)::text, (SELECT recent_agg(v, ts, 10) FROM par_events)::text,
          'merge_agg(recent_state) over shoppers = recent_agg over all events');
SELECT is((SELECT merge_agg(d) FROM par_states_stored)::text, (SELECT distinct_agg(v) FROM par_events)::text,
          'merge_agg(distinct_state) over shoppers = distinct_agg over all events');
SELECT is((SELECT merge_agg(wi) FROM par_states_stored)::text, (SELECT windowed_agg(ts, w) FROM par_events)::text,
          'merge_agg(windowed_state) over shoppers = windowed_agg over all events');
SELECT is((SELECT merge_agg(l) FROM par_states_stored)::text, (SELECT last_agg(id, ts) FROM par_events)::text,
          'merge_agg(last_state) over shoppers = last_agg over all events');

SELECT * FROM finish();
ROLLBACK;
