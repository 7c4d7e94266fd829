-- Windowed reads at a fixed "now" equal a brute-force count over the same
-- rows, for random data and windows whose start falls on a bucket edge:
-- whole hours (up to 48 h) and whole days (up to 90 days) at a midnight,
-- and the last hour at any whole minute.
BEGIN;
SET LOCAL search_path = personalize, public;
SET LOCAL TimeZone = 'UTC';
SELECT plan(40 + 1);

CREATE TABLE win_events (shopper int, ts timestamptz, amount float8);

CREATE FUNCTION win_check(seed int, at timestamptz, spans interval[]) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  span interval;
  bad text[] := '{}';
  n bigint;
BEGIN
  TRUNCATE win_events;
  PERFORM setseed(seed / 100.0);
  INSERT INTO win_events
  SELECT floor(random() * 30)::int,
         at - interval '100 days' * power(random(), 4) - interval '1 microsecond' * floor(random() * 1e6),
         floor(random() * 50)
  FROM generate_series(1, 3000);
  CREATE TEMP TABLE win_states ON COMMIT DROP AS
    SELECT shopper, windowed_agg(ts, amount) s FROM win_events GROUP BY shopper;
  FOREACH span IN ARRAY spans LOOP
    SELECT count(*) INTO n
    FROM win_states w
    JOIN (SELECT shopper, count(*) FILTER (WHERE ts >= at - span) c,
                 coalesce(sum(amount) FILTER (WHERE ts >= at - span), 0) t
          FROM win_events GROUP BY shopper) b USING (shopper)
    WHERE windowed_count(w.s, span, at) <> b.c OR windowed_sum(w.s, span, at) <> b.t;
    IF n > 0 THEN bad := bad || format('%s: %s shoppers differ', span, n); END IF;
  END LOOP;
  DROP TABLE win_states;
  RETURN bad;
END $$;

SELECT is(win_check(s, '2026-06-01 00:00',
                    ARRAY['1 hour', '2 hours', '24 hours', '36 hours', '48 hours',
                          '7 days', '30 days', '90 days']::interval[]), '{}',
          format('windowed reads at a midnight = brute force (seed %s)', s))
FROM generate_series(1, 20) s;
SELECT is(win_check(s, '2026-06-01 13:37', ARRAY['1 hour', '17 minutes']::interval[]), '{}',
          format('last-hour reads at a whole minute = brute force (seed %s)', s))
FROM generate_series(21, 40) s;

-- an unaligned far edge leaves out the partly covered bucket: never more than
-- the brute force, never less than the next aligned window inside it
SELECT ok(bool_and(windowed_count(s, '7 days 5 hours', '2026-06-01') BETWEEN
                   windowed_count(s, '7 days', '2026-06-01') AND
                   (SELECT count(*) FROM win_events e WHERE e.shopper = w.shopper
                      AND ts >= '2026-06-01'::timestamptz - interval '7 days 5 hours')),
          'an unaligned window is rounded inwards to its bucket edge')
FROM (SELECT shopper, windowed_agg(ts, amount) s FROM win_events GROUP BY shopper) w;

SELECT * FROM finish();
ROLLBACK;
