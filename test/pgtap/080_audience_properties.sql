-- Audience properties (SPEC §8) over the example shop (test/shop/), with
-- events ending now so that windows and the clock matter:
--   A. membership equals the condition over the profile view, for every
--      audience and every profile, after the backfill, merges (link),
--      splits and their rebuilds, erasures (forget) and new events;
--   B. the events tell the same story: per audience and profile they
--      alternate entry and exit, the first is an entry (or the exit an
--      erasure leaves), and the last agrees with the membership;
--   C. refresh_audience finds nothing to change;
--   D. every timed profile has a moment scheduled in the future, and at
--      that moment (evaluated by the view as of then) its result differs.
-- Everything is rolled back.
BEGIN;
SET LOCAL search_path = personalize, public;
SET LOCAL TimeZone = 'UTC';
SET LOCAL client_min_messages = warning;
SELECT plan(5 * 3 + 4);

TRUNCATE namespaces, identities, profiles, merge_log, refused_links;
\i test/shop/schema.sql
\i test/shop/generate.sql
SELECT shop.generate(8000, 150, 3, ending => now());
\i test/shop/config.sql

CREATE SCHEMA ref;
CREATE TABLE ref.audiences (name text PRIMARY KEY, condition text);
INSERT INTO ref.audiences VALUES
  ('big_spenders',   'lifetime_value > 300'),
  ('repeat_buyers',  'orders >= 3 AND largest_order < 200'),
  ('unhappy',        $$ticket_sentiment = 'negative'$$),
  ('gold',           $$loyalty_tier = 'gold'$$),
  ('ordered_month',  'orders_in_30d > 0'),
  ('browsing_week',  $$last_seen > now() - interval '7 days' AND coalesce(orders, 0) = 0$$),
  ('lapsed',         $$last_seen < now() - interval '60 days'$$),
  ('new_customers',  $$first_seen > now() - interval '90 days' AND orders > 0$$);
SELECT create_audience(name, condition) FROM ref.audiences;

-- pairs (audience, profile) where membership and the view disagree
CREATE FUNCTION ref.mismatches() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    a record;
    n bigint;
    total bigint := 0;
BEGIN
    FOR a IN SELECT * FROM ref.audiences LOOP
        EXECUTE format($q$SELECT count(*) FROM (
                 (SELECT profile_id FROM personalize.profile_view WHERE %s
                  EXCEPT SELECT profile_id FROM personalize.audience_members WHERE audience = %L)
                 UNION ALL
                 (SELECT profile_id FROM personalize.audience_members WHERE audience = %2$L
                  EXCEPT SELECT profile_id FROM personalize.profile_view WHERE %1$s)) x$q$,
                       a.condition, a.name) INTO n;
        total := total + n;
    END LOOP;
    RETURN total;
END $$;

-- events out of order: two entries or two exits in a row, a first exit
-- that no erasure explains, a last event that is not the membership
CREATE FUNCTION ref.bad_event_stories() RETURNS bigint LANGUAGE sql AS $$
  WITH e AS (
    SELECT audience, profile_id, entered, why,
           lag(entered) OVER w AS prev,
           row_number() OVER w AS nth,
           row_number() OVER (PARTITION BY audience, profile_id ORDER BY id DESC) AS from_end
      FROM personalize.audience_events
    WINDOW w AS (PARTITION BY audience, profile_id ORDER BY id))
  SELECT count(*) FROM e
   WHERE (prev IS NOT NULL AND prev = entered)
      OR (nth = 1 AND NOT entered AND why <> 'erasure')
      OR (from_end = 1 AND why <> 'erasure' AND audience IN (SELECT name FROM personalize.audiences)
          AND entered IS DISTINCT FROM EXISTS (SELECT 1 FROM personalize.audience_members m
                                                WHERE m.audience = e.audience AND m.profile_id = e.profile_id))
$$;

CREATE FUNCTION ref.refresh_changes() RETURNS bigint LANGUAGE sql AS $$
  SELECT sum(refresh_audience(name)) FROM ref.audiences
$$;

-- the step's three properties
CREATE FUNCTION ref.check(step text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN NEXT is(ref.mismatches(), 0::bigint, step || ': memberships equal the conditions over the view');
    RETURN NEXT is(ref.bad_event_stories(), 0::bigint, step || ': entries and exits alternate and end as the membership');
    RETURN NEXT is(ref.refresh_changes(), 0::bigint, step || ': refresh_audience finds nothing to change');
END $$;

SELECT * FROM ref.check('backfill');

-- D. the schedule: each timed profile's moment is in the future, and the
-- view, read as of that moment, gives another result for some timed audience
SELECT ok(count(*) > 0 AND bool_and(d.due > now()), 'timed profiles have a moment ahead')
  FROM audience_due d;
SELECT is(count(*), 0::bigint, 'at each scheduled moment some timed audience''s result changes')
  FROM audience_due d
 WHERE d.due < now() + interval '300 days'
   AND NOT EXISTS (
     SELECT 1 FROM profiles p, ref.audiences a
      WHERE p.id = d.profile_id AND a.name IN ('browsing_week', 'lapsed', 'new_customers')
        AND (SELECT bool_or(x) IS DISTINCT FROM bool_or(y) FROM (SELECT
               CASE a.name
                 WHEN 'browsing_week' THEN p.last_seen > now() - interval '7 days'
                 WHEN 'lapsed' THEN p.last_seen < now() - interval '60 days'
                 WHEN 'new_customers' THEN p.first_seen > now() - interval '90 days' END AS x,
               CASE a.name
                 WHEN 'browsing_week' THEN p.last_seen > d.due - interval '7 days'
                 WHEN 'lapsed' THEN p.last_seen < d.due - interval '60 days'
                 WHEN 'new_customers' THEN p.first_seen > d.due - interval '90 days' END AS y) z)
        OR windowed_count(profile_get(p.states, (SELECT id FROM traits WHERE name = 'orders_in'), NULL::windowed_state),
                          interval '30 days', now())
           IS DISTINCT FROM
           windowed_count(profile_get(p.states, (SELECT id FROM traits WHERE name = 'orders_in'), NULL::windowed_state),
                          interval '30 days', d.due));

-- merges: anonymous visitors who never logged in turn out to be customers
SELECT ok(bool_and(link('customer_id', c::text, 'anonymous_id', 'a-' || (150 + c) || '-0')),
          'anonymous visitors merge into customers')
  FROM generate_series(10, 60, 5) c WHERE resolve('anonymous_id', 'a-' || (150 + c) || '-0') IS NOT NULL;
SELECT ok(count(*) > 0, 'the merges ended memberships') FROM audience_events WHERE why = 'merge' AND NOT entered;
SELECT * FROM ref.check('merges');

-- splits, and the rebuild of both sides
CREATE TEMP TABLE split_pairs AS
SELECT resolve('anonymous_id', 'a-' || (150 + c) || '-0') AS old_profile,
       split('anonymous_id', 'a-' || (150 + c) || '-0') AS new_profile
  FROM generate_series(10, 30, 5) c WHERE resolve('anonymous_id', 'a-' || (150 + c) || '-0') IS NOT NULL;
SELECT rebuild(old_profile), rebuild(new_profile) FROM split_pairs;
SELECT * FROM ref.check('splits');

-- erasures
SELECT count(*) FROM generate_series(3, 40, 9) c, forget('customer_id', c::text);
SELECT * FROM ref.check('erasures');

-- new events, then a rebuild of everything
INSERT INTO shop.orders
SELECT 100000 + i, 1 + i % 150, NULL, 'sku-x', 'shoes', 20 + i, now() - make_interval(hours => i)
  FROM generate_series(1, 300) i;
INSERT INTO shop.support_tickets (email, status, sentiment, opened_at)
SELECT 'c' || (1 + i % 150) || '@example.com', 'open',
       CASE WHEN i % 3 = 0 THEN 'negative' ELSE 'positive' END, now() - make_interval(mins => i)
  FROM generate_series(1, 200) i;
SELECT rebuild();
SELECT * FROM ref.check('new events and rebuild');

SELECT * FROM finish();
ROLLBACK;
