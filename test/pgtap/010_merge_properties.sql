-- Property tests over many random seeds: for every trait-state kind, merge
-- is associative and commutative, the aggregate over a set equals the merge
-- of aggregates over any split of it (by ||, by merge_agg, and in any row
-- order).  top_state weights are floating point: they are compared within a
-- relative 1e-9, everything else must be equal byte for byte.
BEGIN;
SET LOCAL search_path = personalize, public;
SET LOCAL TimeZone = 'UTC';
SELECT plan(7 * 30 + 2 * 10);

CREATE TABLE prop_events (part int, v text, c text, ts timestamptz, w float8);

-- Random events: values from a pool of pool_size, times over span before a
-- fixed instant (skewed towards it), weights whole numbers, parts 0..2.
CREATE FUNCTION prop_fill(seed int, n int, pool_size int, span interval) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE prop_events;
  PERFORM setseed(seed / 1000.0);
  INSERT INTO prop_events
  SELECT floor(random() * 3)::int,
         'v' || floor(random() * pool_size)::int,
         'c' || floor(random() * 5)::int,
         '2026-06-01'::timestamptz - span * power(random(), 3) - interval '1 s' * floor(random() * 60),
         floor(random() * 100)
  FROM generate_series(1, n);
END $$;

-- Same values, weights within a relative 1e-9.
CREATE FUNCTION top_close(a top_state, b top_state) RETURNS boolean
LANGUAGE sql AS $$
  SELECT a::text::jsonb - 'items' = b::text::jsonb - 'items'
     AND (SELECT count(*) FROM top_items(a)) = (SELECT count(*) FROM top_items(b))
     AND NOT EXISTS (
       SELECT 1 FROM top_items(a) x FULL JOIN top_items(b) y USING (value)
       WHERE x.weight IS NULL OR y.weight IS NULL
          OR abs(x.weight - y.weight) > 1e-9 * greatest(abs(x.weight), abs(y.weight)))
$$;

-- Check every property for one kind on the current prop_events; returns
-- the names of the properties that failed.
CREATE FUNCTION prop_check(typ text, agg text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  eq text := CASE typ WHEN 'top_state' THEN 'top_close(%s, %s)' ELSE '(%s = %s)' END;
  failed text[] := '{}';
  ok boolean;
BEGIN
  EXECUTE format('CREATE TEMP TABLE parts ON COMMIT DROP AS
                  SELECT part, %s AS s FROM prop_events GROUP BY part', agg);
  EXECUTE format('CREATE TEMP TABLE whole ON COMMIT DROP AS
                  SELECT %s AS s FROM prop_events', agg);
  EXECUTE format('CREATE TEMP TABLE reordered ON COMMIT DROP AS
                  SELECT %s AS s FROM (SELECT * FROM prop_events ORDER BY md5(v || ts::text) DESC) q',
                 agg);
  EXECUTE format($q$SELECT %s FROM
      (SELECT s AS a FROM parts WHERE part = 0) a, (SELECT s AS b FROM parts WHERE part = 1) b,
      (SELECT s AS c FROM parts WHERE part = 2) c$q$,
      format(eq, '((a || b) || c)', '(a || (b || c))')) INTO ok;
  IF ok IS NOT TRUE THEN failed := failed || 'associative'::text; END IF;
  EXECUTE format($q$SELECT %s FROM
      (SELECT s AS a FROM parts WHERE part = 0) a, (SELECT s AS b FROM parts WHERE part = 1) b$q$,
      format(eq, '(a || b)', '(b || a)')) INTO ok;
  IF ok IS NOT TRUE THEN failed := failed || 'commutative'::text; END IF;
  EXECUTE format($q$SELECT %s FROM whole w,
      (SELECT s AS a FROM parts WHERE part = 0) a, (SELECT s AS b FROM parts WHERE part = 1) b,
      (SELECT s AS c FROM parts WHERE part = 2) c$q$,
      format(eq, 'w.s', '(c || a || b)')) INTO ok;
  IF ok IS NOT TRUE THEN failed := failed || 'split'::text; END IF;
  EXECUTE format('SELECT %s FROM whole w, (SELECT merge_agg(s) AS m FROM parts) m',
      format(eq, 'w.s', 'm.m')) INTO ok;
  IF ok IS NOT TRUE THEN failed := failed || 'merge_agg'::text; END IF;
  EXECUTE format('SELECT %s FROM whole w, reordered r', format(eq, 'w.s', 'r.s')) INTO ok;
  IF ok IS NOT TRUE THEN failed := failed || 'row order'::text; END IF;
  DROP TABLE parts, whole, reordered;
  RETURN failed;
END $$;

CREATE FUNCTION prop_run(typ text, agg text, seed int, n int, pool_size int, span interval)
RETURNS text[] LANGUAGE plpgsql AS $$
BEGIN
  PERFORM prop_fill(seed, n, pool_size, span);
  RETURN prop_check(typ, agg);
END $$;

SELECT is(prop_run('recent_state', 'recent_agg(v, ts, 8)', s, 300, 40, '30 days'), '{}',
          format('recent_state: merge properties hold (seed %s)', s))
FROM generate_series(1, 30) s;
SELECT is(prop_run('top_state', $$top_agg(v, ts, 50, '3 days', w)$$, s, 300, 40, '60 days'), '{}',
          format('top_state: merge properties hold (seed %s)', s))
FROM generate_series(1, 30) s;
SELECT is(prop_run('windowed_state', 'windowed_agg(ts, w)', s, 400, 10, '120 days'), '{}',
          format('windowed_state: merge properties hold (seed %s)', s))
FROM generate_series(1, 30) s;
SELECT is(prop_run('distinct_state', 'distinct_agg(v, 8)', s, 400, 300 * s, '1 day'), '{}',
          format('distinct_state: merge properties hold, sparse and dense (seed %s)', s))
FROM generate_series(1, 30) s;
SELECT is(prop_run('first_state', 'first_agg(v, date_trunc(''hour'', ts))', s, 200, 40, '10 days'), '{}',
          format('first_state: merge properties hold, with ties (seed %s)', s))
FROM generate_series(1, 30) s;
SELECT is(prop_run('last_state', 'last_agg(v, date_trunc(''hour'', ts))', s, 200, 40, '10 days'), '{}',
          format('last_state: merge properties hold, with ties (seed %s)', s))
FROM generate_series(1, 30) s;
SELECT is(prop_run('session_state', 'session_agg(ts, c, v)', s, 150, 40, '20 hours'), '{}',
          format('session_state: merge properties hold (seed %s)', s))
FROM generate_series(1, 30) s;

SELECT is(prop_run('metric_state', $$metric_agg('sum', w::numeric / 7)$$, s, 200, 40, '10 days'), '{}',
          format('metric_state (sum): merge properties hold (seed %s)', s))
FROM generate_series(1, 10) s;
SELECT is(prop_run('metric_state', $$metric_agg('max', length(v) * w::numeric)$$, s, 200, 40, '10 days'), '{}',
          format('metric_state (max): merge properties hold (seed %s)', s))
FROM generate_series(1, 10) s;

SELECT * FROM finish();
ROLLBACK;
