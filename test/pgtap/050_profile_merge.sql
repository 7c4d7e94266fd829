-- Property tests of profile merge over many random seeds.  Each seed builds
-- four partial profiles (parts 0..3) holding one trait of every kind, under
-- trait ids that change with the seed, from random events; some parts miss
-- some traits.  Then: || is associative and commutative, the empty profile
-- (and NULL) is its identity, merging profiles is merging their states
-- trait by trait, merge_agg equals || folded, and the merge of the parts
-- equals the profile of all events.  top_state weights are floating point
-- (and beyond N the state is a summary): its trait is compared within a
-- relative 1e-9 where the order of merges differs; everything else must be
-- equal byte for byte.
BEGIN;
SET LOCAL search_path = personalize, public;
SET LOCAL TimeZone = 'UTC';
SELECT plan(30 + 7);

-- k is the kind of trait the event feeds: 1 recent, 2 top, 3 windowed,
-- 4 distinct, 5 first, 6 last, 7 session
CREATE TABLE pp_events (part int, k int, v text, c text, ts timestamptz, w float8);
CREATE TABLE pp_ids (k int PRIMARY KEY, id int);

CREATE FUNCTION pp_fill(seed int, n int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE pp_events, pp_ids;
  PERFORM setseed(seed / 1000.0);
  -- distinct ids whose order differs from the kinds' order from seed to seed
  INSERT INTO pp_ids SELECT k, k + 1000 * ((seed * k * 7) % 23) FROM generate_series(1, 7) k;
  IF seed % 5 = 0 THEN
    UPDATE pp_ids SET id = 2147483647 - k WHERE k IN (2, 6); -- the largest ids
  END IF;
  INSERT INTO pp_events
  SELECT floor(random() * 4)::int, k,
         CASE WHEN k = 2 THEN 'c' || floor(random() * 5)::int
              WHEN k = 4 THEN 'v' || floor(random() * 300 * seed)::int
              ELSE 'v' || floor(random() * 40)::int END,
         'c' || floor(random() * 5)::int,
         CASE WHEN k IN (5, 6) THEN date_trunc('hour', '2026-06-01'::timestamptz - interval '10 days' * random())
              WHEN k = 7 THEN '2026-06-01'::timestamptz - interval '20 hours' * power(random(), 3)
              ELSE '2026-06-01'::timestamptz - interval '120 days' * power(random(), 3)
                   - interval '1 s' * floor(random() * 60) END,
         floor(random() * 100)
  FROM (SELECT 1 + floor(random() * 7)::int AS k FROM generate_series(1, n)) q;
END $$;

-- The profile of the events matching a condition.
CREATE FUNCTION pp_profile(cond text) RETURNS profile
LANGUAGE plpgsql AS $$
DECLARE
  result profile;
BEGIN
  EXECUTE format($q$
    SELECT profile_set(profile_set(profile_set(profile_set(profile_set(profile_set(profile_set('{}',
             (SELECT id FROM pp_ids WHERE k = 1), recent_agg(v, ts, 8) FILTER (WHERE k = 1)),
             (SELECT id FROM pp_ids WHERE k = 2), top_agg(v, ts, 10, '3 days', w) FILTER (WHERE k = 2)),
             (SELECT id FROM pp_ids WHERE k = 3), windowed_agg(ts, w) FILTER (WHERE k = 3)),
             (SELECT id FROM pp_ids WHERE k = 4), distinct_agg(v, 8) FILTER (WHERE k = 4)),
             (SELECT id FROM pp_ids WHERE k = 5), first_agg(v, ts) FILTER (WHERE k = 5)),
             (SELECT id FROM pp_ids WHERE k = 6), last_agg(v, ts) FILTER (WHERE k = 6)),
             (SELECT id FROM pp_ids WHERE k = 7), session_agg(ts, c, v) FILTER (WHERE k = 7))
    FROM pp_events WHERE %s$q$, cond) INTO result;
  RETURN result;
END $$;

-- Same values, weights within a relative 1e-9 (as in 010_merge_properties).
CREATE FUNCTION pp_top_close(a top_state, b top_state) RETURNS boolean
LANGUAGE sql AS $$
  SELECT (a IS NULL AND b IS NULL) OR (
         a::text::jsonb - 'items' = b::text::jsonb - 'items'
     AND (SELECT count(*) FROM top_items(a)) = (SELECT count(*) FROM top_items(b))
     AND NOT EXISTS (
       SELECT 1 FROM top_items(a) x FULL JOIN top_items(b) y USING (value)
       WHERE x.weight IS NULL OR y.weight IS NULL
          OR abs(x.weight - y.weight) > 1e-9 * greatest(abs(x.weight), abs(y.weight))))
$$;

-- Equal profiles, the top_state trait within the tolerance.
CREATE FUNCTION pp_close(a profile, b profile) RETURNS boolean
LANGUAGE sql AS $$
  SELECT profile_remove(a, t.id) = profile_remove(b, t.id)
     AND pp_top_close(profile_get(a, t.id, NULL::top_state), profile_get(b, t.id, NULL::top_state))
  FROM pp_ids t WHERE t.k = 2
$$;

-- Every property on the current pp_events; returns the names of those that failed.
CREATE FUNCTION pp_check() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  a profile := pp_profile('part = 0');
  b profile := pp_profile('part = 1');
  c profile := pp_profile('part = 2');
  d profile := pp_profile('part = 3');
  whole profile := pp_profile('true');
  failed text[] := '{}';
  per_trait boolean;
BEGIN
  IF pp_close((a || b) || c, a || (b || c)) IS NOT TRUE THEN failed := failed || 'associative'::text; END IF;
  IF pp_close(a || b, b || a) IS NOT TRUE THEN failed := failed || 'commutative'::text; END IF;
  IF (a || '{}' = a AND '{}' || a = a AND profile_merge(a, NULL) = a AND profile_merge(NULL, a) = a) IS NOT TRUE THEN
    failed := failed || 'identity'::text;
  END IF;
  -- the same state merges in the same order: equal bytes, top_state included
  SELECT bool_and(CASE t.k
      WHEN 1 THEN profile_get(a || b, t.id, NULL::recent_state) IS NOT DISTINCT FROM
                  state_merge(profile_get(a, t.id, NULL::recent_state), profile_get(b, t.id, NULL::recent_state))
      WHEN 2 THEN profile_get(a || b, t.id, NULL::top_state) IS NOT DISTINCT FROM
                  state_merge(profile_get(a, t.id, NULL::top_state), profile_get(b, t.id, NULL::top_state))
      WHEN 3 THEN profile_get(a || b, t.id, NULL::windowed_state) IS NOT DISTINCT FROM
                  state_merge(profile_get(a, t.id, NULL::windowed_state), profile_get(b, t.id, NULL::windowed_state))
      WHEN 4 THEN profile_get(a || b, t.id, NULL::distinct_state) IS NOT DISTINCT FROM
                  state_merge(profile_get(a, t.id, NULL::distinct_state), profile_get(b, t.id, NULL::distinct_state))
      WHEN 5 THEN profile_get(a || b, t.id, NULL::first_state) IS NOT DISTINCT FROM
                  state_merge(profile_get(a, t.id, NULL::first_state), profile_get(b, t.id, NULL::first_state))
      WHEN 6 THEN profile_get(a || b, t.id, NULL::last_state) IS NOT DISTINCT FROM
                  state_merge(profile_get(a, t.id, NULL::last_state), profile_get(b, t.id, NULL::last_state))
      ELSE profile_get(a || b, t.id, NULL::session_state) IS NOT DISTINCT FROM
           state_merge(profile_get(a, t.id, NULL::session_state), profile_get(b, t.id, NULL::session_state))
      END) INTO per_trait FROM pp_ids t;
  IF per_trait IS NOT TRUE THEN failed := failed || 'per-trait merge'::text; END IF;
  IF profile_traits(a || b) IS DISTINCT FROM
     ARRAY(SELECT unnest(profile_traits(a)) UNION SELECT unnest(profile_traits(b)) ORDER BY 1) THEN
    failed := failed || 'traits of a merge'::text;
  END IF;
  IF (SELECT merge_agg(p) = ((a || b) || c) || d FROM unnest(ARRAY[a, b, c, d]) p) IS NOT TRUE THEN
    failed := failed || 'merge_agg'::text;
  END IF;
  IF pp_close(whole, d || b || c || a) IS NOT TRUE THEN failed := failed || 'split'::text; END IF;
  RETURN failed;
END $$;

CREATE FUNCTION pp_run(seed int, n int) RETURNS text[]
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pp_fill(seed, n);
  RETURN pp_check();
END $$;

SELECT is(pp_run(s, 100 + 40 * s), '{}', format('profile merge properties hold (seed %s)', s))
FROM generate_series(1, 30) s;

-- the generator is not vacuous: parts of the last seed hold every kind, and with
-- few events some parts miss traits
SELECT ok((SELECT bool_or(array_length(profile_traits(pp_profile(format('part = %s', p))), 1) = 7)
           FROM generate_series(0, 3) p),
          'a part holds all seven kinds');
SELECT ok((SELECT count(*) FROM pp_ids) = 7 AND (SELECT count(DISTINCT id) FROM pp_ids) = 7,
          'seven distinct trait ids');
SELECT ok(NOT pp_close(pp_profile('part = 0'), pp_profile('part = 0') || pp_profile('part = 1')),
          'the comparison tells different profiles apart');
SELECT pp_fill(7, 12);
SELECT ok((SELECT bool_or(coalesce(array_length(profile_traits(pp_profile(format('part = %s', p))), 1), 0) < 7)
           FROM generate_series(0, 3) p),
          'with few events, some parts miss some traits');
SELECT is(pp_check(), '{}', 'profile merge properties hold when parts miss traits');

-- merging states of different kinds under one trait id is refused
SELECT throws_ok($$SELECT profile_set('{}', 9, '{"value": "a", "time": "2026-01-01"}'::first_state)
                       || profile_set('{}', 9, '{"value": "a", "time": "2026-01-01"}'::last_state)$$,
                 '42804', 'cannot merge trait 9: one profile holds a first_state, the other a last_state',
                 'different kinds under one trait id: ERROR naming the trait and both kinds');
SELECT throws_ok($$SELECT merge_agg(p) FROM (VALUES (profile_set('{}', 9, '{"value": "a", "time": "2026-01-01"}'::first_state)),
                                                (profile_set('{}', 9, '{"n": 2, "items": []}'::recent_state))) v(p)$$,
                 '42804', NULL, 'merge_agg refuses different kinds under one trait id too');

SELECT * FROM finish();
ROLLBACK;
