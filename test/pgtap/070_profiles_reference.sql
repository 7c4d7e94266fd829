-- Profiles built from the example shop (test/shop/) against plain-SQL
-- reference queries:
--   A. every event goes to the profile of its best usable identifier: the
--      reference attributes each row with resolve() in namespace priority
--      order, independently of rebuild()'s own key table;
--   B. the exact trait kinds (count, sum, max, first/last by event time,
--      recent N by event time, windowed counts read on bucket edges, first
--      and last seen) equal the reference for every profile; the approximate
--      ones stay within their documented error (distinct: 3 standard errors;
--      top: the favourite category, where the reference's is clear);
--   C. sources registered and traits added one at a time (each backfilled)
--      give exactly what one rebuild() gives, and so does a rebuild with a
--      forced parallel plan; rebuild(profile) of a damaged profile restores it.
-- Two seeds; everything is rolled back.
BEGIN;
SET LOCAL search_path = personalize, public;
SET LOCAL TimeZone = 'UTC';
SET LOCAL client_min_messages = warning;
SELECT plan(2 * 16 + 3);

TRUNCATE namespaces, identities, profiles, merge_log, refused_links;
\i test/shop/schema.sql
\i test/shop/generate.sql
SELECT shop.generate(30000, 300, 1);
\i test/shop/config.sql

CREATE SCHEMA ref;
CREATE FUNCTION ref.r(ns text, v text) RETURNS bigint LANGUAGE sql
RETURN CASE WHEN v IS NOT NULL THEN resolve(ns, v) END;
-- every source row with the profile of its best usable identifier
CREATE FUNCTION ref.attributed() RETURNS TABLE (pid bigint, source text, event_type text, ts timestamptz,
    sku text, category text, amount numeric, campaign text, tier text, sentiment text, size text)
LANGUAGE sql AS $$
  SELECT coalesce(ref.r('customer_id', customer_id::text), ref.r('email', email)), 'orders', 'order',
         ordered_at, sku, category, amount, NULL, NULL, NULL, NULL FROM shop.orders
  UNION ALL
  SELECT coalesce(ref.r('customer_id', customer_id::text), ref.r('anonymous_id', anonymous_id)), 'web', event_type,
         ts, sku, category, NULL, NULL, NULL, NULL, props ->> 'size' FROM shop.web_events
  UNION ALL
  SELECT ref.r('email', email), 'email', event_type, ts, NULL, NULL, NULL, campaign, NULL, NULL, NULL FROM shop.email_events
  UNION ALL
  SELECT coalesce(ref.r('customer_id', customer_id::text), ref.r('loyalty_no', loyalty_no)), 'loyalty', 'loyalty',
         ts, NULL, NULL, NULL, NULL, tier, NULL, NULL FROM shop.loyalty_events
  UNION ALL
  SELECT coalesce(ref.r('email', email), ref.r('phone', phone)), 'support', 'ticket',
         opened_at, NULL, NULL, NULL, NULL, NULL, sentiment, NULL FROM shop.support_tickets
$$;

-- Equal profiles, but for floating-point rounding in top states: their
-- weights are sums, which differ in the last bits with the order of the
-- events (README: exact up to ~1e-15 relative).
CREATE FUNCTION ref.same(a profile, b profile) RETURNS boolean LANGUAGE sql AS $$
  SELECT coalesce(profile_remove(a, t.id) = profile_remove(b, t.id), a IS NULL AND b IS NULL)
     AND top_values(profile_get(a, t.id, NULL::top_state)) IS NOT DISTINCT FROM top_values(profile_get(b, t.id, NULL::top_state))
     AND coalesce((SELECT bool_and(abs(x - y) <= 1e-12 * greatest(abs(x), abs(y)))
                     FROM unnest(top_weights(profile_get(a, t.id, NULL::top_state)),
                                 top_weights(profile_get(b, t.id, NULL::top_state))) w(x, y)), true)
    FROM traits t WHERE t.name = 'category_affinity'
$$;

-- The checks, once per seed.  Returns TAP lines.
CREATE FUNCTION ref.check(seed integer) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := '2026-06-01 00:00:00+00';   -- generate()'s end: a UTC midnight
    bad bigint;
    total bigint;
BEGIN
    CREATE TEMP TABLE ev ON COMMIT DROP AS SELECT * FROM ref.attributed();
    SELECT count(*) INTO bad FROM ev WHERE pid IS NULL;
    -- only the blocked address and values that do not normalize attribute nowhere
    RETURN NEXT is((SELECT count(*) FROM ev e WHERE pid IS NULL AND source IN ('orders', 'web', 'loyalty')), 0::bigint,
                   format('seed %s: every order, web and loyalty event has a profile', seed));
    RETURN NEXT ok((SELECT count(*) FROM profiles) > 300, format('seed %s: profiles were made (%s)', seed, (SELECT count(*) FROM profiles)));

    -- first and last seen
    RETURN NEXT is((SELECT count(*) FROM (SELECT pid, min(ts) f, max(ts) l FROM ev WHERE pid IS NOT NULL GROUP BY pid) r
                     FULL JOIN profile_view v ON v.profile_id = r.pid
                    WHERE v.first_seen IS DISTINCT FROM r.f OR v.last_seen IS DISTINCT FROM r.l), 0::bigint,
                   format('seed %s: first_seen and last_seen of every profile', seed));
    -- count, sum, max over orders
    RETURN NEXT is((SELECT count(*) FROM profile_view v
                     LEFT JOIN (SELECT pid, count(*) n, sum(amount) s, max(amount) m FROM ev WHERE source = 'orders' GROUP BY pid) r
                       ON r.pid = v.profile_id
                    WHERE v.orders <> coalesce(r.n, 0) OR v.lifetime_value IS DISTINCT FROM r.s
                       OR v.largest_order IS DISTINCT FROM r.m), 0::bigint,
                   format('seed %s: orders (count), lifetime_value (sum), largest_order (max)', seed));
    -- last by event time, ties by the larger value
    RETURN NEXT is((SELECT count(*) FROM profile_view v
                     LEFT JOIN (SELECT DISTINCT ON (pid) pid, tier, ts FROM ev WHERE tier IS NOT NULL
                                 ORDER BY pid, ts DESC, tier COLLATE "C" DESC) r ON r.pid = v.profile_id
                    WHERE v.loyalty_tier IS DISTINCT FROM r.tier OR v.loyalty_tier_at IS DISTINCT FROM r.ts), 0::bigint,
                   format('seed %s: loyalty_tier is the latest by event time, though events arrive in any order', seed));
    RETURN NEXT is((SELECT count(*) FROM profile_view v
                     LEFT JOIN (SELECT DISTINCT ON (pid) pid, sentiment FROM ev WHERE source = 'support'
                                 ORDER BY pid, ts DESC, sentiment COLLATE "C" DESC) r ON r.pid = v.profile_id
                    WHERE v.ticket_sentiment IS DISTINCT FROM r.sentiment), 0::bigint,
                   format('seed %s: ticket_sentiment (last, one source)', seed));
    RETURN NEXT is((SELECT count(*) FROM profile_view v
                     LEFT JOIN (SELECT DISTINCT ON (pid) pid, size FROM ev WHERE size IS NOT NULL
                                 ORDER BY pid, ts DESC, size COLLATE "C" DESC) r ON r.pid = v.profile_id
                    WHERE v.last_size IS DISTINCT FROM r.size), 0::bigint,
                   format('seed %s: last_size (a jsonb key)', seed));
    -- recent N: distinct values at their latest time, newest first, ties by smaller bytes
    RETURN NEXT is((SELECT count(*) FROM profile_view v
                     LEFT JOIN (SELECT pid, (array_agg(sku ORDER BY t DESC, sku COLLATE "C"))[1:10] AS skus
                                  FROM (SELECT pid, sku, max(ts) t FROM ev
                                         WHERE sku IS NOT NULL AND event_type IN ('product_view', 'add_to_cart')
                                         GROUP BY pid, sku) d GROUP BY pid) r ON r.pid = v.profile_id
                    WHERE v.last_viewed IS DISTINCT FROM r.skus), 0::bigint,
                   format('seed %s: last_viewed (recent 10, filtered by event type)', seed));
    RETURN NEXT is((SELECT count(*) FROM profile_view v
                     LEFT JOIN (SELECT pid, (array_agg(campaign ORDER BY t DESC, campaign COLLATE "C"))[1:3] AS c
                                  FROM (SELECT pid, campaign, max(ts) t FROM ev
                                         WHERE campaign IS NOT NULL AND event_type IN ('open', 'click')
                                         GROUP BY pid, campaign) d GROUP BY pid) r ON r.pid = v.profile_id
                    WHERE v.campaigns_opened IS DISTINCT FROM r.c), 0::bigint,
                   format('seed %s: campaigns_opened (recent 3 of opens and clicks)', seed));
    RETURN NEXT is((SELECT count(*) FROM profile_view v
                     LEFT JOIN (SELECT pid, (array_agg(sku ORDER BY t DESC, sku COLLATE "C"))[1:20] AS skus
                                  FROM (SELECT pid, sku, max(ts) t FROM ev WHERE source = 'orders'
                                         GROUP BY pid, sku) d GROUP BY pid) r ON r.pid = v.profile_id
                    WHERE v.bought IS DISTINCT FROM r.skus), 0::bigint,
                   format('seed %s: bought (recent 20 of one source)', seed));
    -- windowed counts, read at a UTC midnight: every window edge is a bucket edge
    RETURN NEXT is((SELECT count(*) FROM profiles p
                     LEFT JOIN (SELECT pid, count(*) FILTER (WHERE ts >= at - interval '1 hour') h1,
                                       count(*) FILTER (WHERE ts >= at - interval '24 hours') h24,
                                       count(*) FILTER (WHERE ts >= at - interval '7 days') d7,
                                       count(*) FILTER (WHERE ts >= at - interval '30 days') d30
                                  FROM ev WHERE source = 'orders' GROUP BY pid) r ON r.pid = p.id,
                           LATERAL (SELECT profile_get(p.states, (SELECT id FROM traits WHERE name = 'orders_in'),
                                                       NULL::windowed_state) AS s) w
                    WHERE coalesce(windowed_count(w.s, '1 hour', at), 0) <> coalesce(r.h1, 0)
                       OR coalesce(windowed_count(w.s, '24 hours', at), 0) <> coalesce(r.h24, 0)
                       OR coalesce(windowed_count(w.s, '7 days', at), 0) <> coalesce(r.d7, 0)
                       OR coalesce(windowed_count(w.s, '30 days', at), 0) <> coalesce(r.d30, 0)), 0::bigint,
                   format('seed %s: orders_in (windowed count over 1h, 24h, 7d, 30d)', seed));
    SELECT count(*) FILTER (WHERE r.n >= 1) INTO total FROM (SELECT pid, count(*) n FROM ev WHERE source = 'orders' GROUP BY pid) r;
    RETURN NEXT ok(total > 50, format('seed %s: %s profiles have orders', seed, total));
    -- distinct: HyperLogLog at precision 12, standard error 1.04 / 64 = 1.6 %.
    -- Over hundreds of profiles some estimate may fall outside 3 standard
    -- errors (two register collisions among 24 values do it): at most 1 % of
    -- them may, and the root-mean-square relative error stays within one.
    RETURN NEXT ok((SELECT count(*) FILTER (WHERE abs(v.products_seen - r.n) > greatest(1, 3 * 1.04 / 64 * r.n)) <= 0.01 * count(*)
                       AND sqrt(avg(((v.products_seen - r.n) / r.n::float8) ^ 2)) <= 1.04 / 64
                      FROM profile_view v
                      JOIN (SELECT pid, count(DISTINCT sku) n FROM ev WHERE source = 'web' AND sku IS NOT NULL GROUP BY pid) r ON r.pid = v.profile_id),
                   format('seed %s: products_seen (distinct) within its documented error', seed));
    -- top: 10 categories and N = 10, so the state holds every category; the
    -- favourite is the reference's heaviest wherever that one is clear
    RETURN NEXT is((SELECT count(*) FROM profile_view v
                     JOIN (SELECT pid, (array_agg(category ORDER BY w DESC))[1] fav,
                                  (array_agg(w ORDER BY w DESC))[1] w1, (array_agg(w ORDER BY w DESC))[2] w2
                             FROM (SELECT pid, category,
                                          sum(power(2, extract(epoch FROM ts - latest) / extract(epoch FROM interval '14 days'))) w
                                     FROM (SELECT *, max(ts) OVER (PARTITION BY pid) latest FROM ev
                                            WHERE category IS NOT NULL AND source IN ('web', 'orders')) x
                                    GROUP BY pid, category) c GROUP BY pid) r ON r.pid = v.profile_id
                    WHERE (r.w2 IS NULL OR r.w1 > r.w2 * (1 + 1e-9)) AND v.category_affinity[1] IS DISTINCT FROM r.fav), 0::bigint,
                   format('seed %s: category_affinity''s favourite (top, 14-day half-life)', seed));

    -- C. the same profiles from one rebuild, serial and forced parallel
    CREATE TEMP TABLE built ON COMMIT DROP AS SELECT id, states, first_seen, last_seen FROM profiles;
    PERFORM rebuild();
    RETURN NEXT is((SELECT count(*) FROM built b FULL JOIN profiles p USING (id)
                     WHERE NOT ref.same(b.states, p.states) OR b.first_seen IS DISTINCT FROM p.first_seen
                        OR b.last_seen IS DISTINCT FROM p.last_seen), 0::bigint,
                   format('seed %s: sources and traits added one by one equal one rebuild()', seed));
    SET LOCAL parallel_setup_cost = 0;
    SET LOCAL parallel_tuple_cost = 0;
    SET LOCAL min_parallel_table_scan_size = 0;
    SET LOCAL max_parallel_workers_per_gather = 2;
    PERFORM rebuild();
    RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;
    RETURN NEXT is((SELECT count(*) FROM built b FULL JOIN profiles p USING (id)
                     WHERE NOT ref.same(b.states, p.states)), 0::bigint,
                   format('seed %s: a rebuild with a parallel plan equals the serial one', seed));
    DROP TABLE ev, built;
END $$;

SELECT ref.check(1);

-- rebuild(profile) restores one damaged profile and touches no other
CREATE TEMP TABLE good AS SELECT id, states, first_seen, last_seen FROM profiles;
UPDATE profiles SET states = '{}', first_seen = NULL WHERE id = resolve('customer_id', '1');
SELECT is(rebuild(resolve('customer_id', '1')), 1::bigint, 'rebuild(profile) rebuilds one profile');
SELECT is((SELECT count(*) FROM good g JOIN profiles p USING (id)
            WHERE NOT ref.same(g.states, p.states) OR g.first_seen IS DISTINCT FROM p.first_seen), 0::bigint,
          'rebuild(profile) restores it exactly');
-- a trait changed and changed back is rebuilt to the same states
SELECT alter_trait('last_viewed', n => 3);
SELECT alter_trait('last_viewed', n => 10);
SELECT is((SELECT count(*) FROM good g JOIN profiles p USING (id) WHERE NOT ref.same(g.states, p.states)), 0::bigint,
          'a trait altered and altered back is rebuilt to the same states');

-- a second seed, with new data in the same tables, rebuilt from scratch
TRUNCATE shop.orders, shop.web_events, shop.email_events, shop.loyalty_events, shop.support_tickets;
TRUNCATE identities, profiles, merge_log, refused_links;
SELECT shop.generate(20000, 150, 2);
SELECT rebuild();
SELECT ref.check(2);

SELECT * FROM finish();
ROLLBACK;
