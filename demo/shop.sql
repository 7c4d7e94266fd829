-- The demo shop: events from five systems, and the questions trait states
-- answer.  Run by demo/run against a throwaway cluster.
\pset footer off
CREATE EXTENSION personalize;
SET search_path = personalize, public;
SET TimeZone = 'UTC';

\echo '== Five systems, five identifiers =='
CREATE TABLE web_events (anonymous_id text, customer_id bigint, kind text,
                         sku text, category text, size text, ts timestamptz);
CREATE TABLE orders (order_id bigint, customer_id bigint, email text, sku text,
                     amount numeric, ts timestamptz);
CREATE TABLE email_events (email text, campaign text, kind text, ts timestamptz);
CREATE TABLE loyalty_events (loyalty_no text, customer_id bigint, tier text, points int, ts timestamptz);
CREATE TABLE support_tickets (email text, status text, sentiment text, ts timestamptz);

-- "now" for the demo, so the output is the same every time
\set now '''2026-03-10 12:00:00+00'''

-- Anonymous visitor a-77 compares running shoes for ten minutes, filtering by size 44,
-- then logs in as customer 1001.
INSERT INTO web_events VALUES
  ('a-77', NULL, 'view',   'trail-runner-2', 'running shoes', NULL, :now::timestamptz - interval '22 min'),
  ('a-77', NULL, 'filter', NULL,             'running shoes', '44', :now::timestamptz - interval '20 min'),
  ('a-77', NULL, 'view',   'road-glide-5',   'running shoes', '44', :now::timestamptz - interval '17 min'),
  ('a-77', NULL, 'view',   'trail-runner-2', 'running shoes', '44', :now::timestamptz - interval '15 min'),
  ('a-77', NULL, 'view',   'wool-socks',     'socks',         NULL, :now::timestamptz - interval '14 min'),
  ('a-77', NULL, 'view',   'road-glide-5',   'running shoes', '44', :now::timestamptz - interval '12 min'),
  ('a-77', 1001, 'login',  NULL,             NULL,            NULL, :now::timestamptz - interval '11 min'),
  ('a-77', 1001, 'cart',   'road-glide-5',   'running shoes', '44', :now::timestamptz - interval '10 min');
-- Customer 1001's history: two years of hiking, lately running; 1002 is someone else.
INSERT INTO web_events
SELECT NULL, 1001, 'view', 'boot-' || i % 4, 'hiking boots', NULL,
       :now::timestamptz - interval '700 days' + i * interval '3 hours'
FROM generate_series(1, 60) i;
INSERT INTO web_events
SELECT NULL, 1001, 'view', 'runner-' || i % 3, 'running shoes', NULL,
       :now::timestamptz - interval '9 days' + i * interval '9 hours'
FROM generate_series(1, 12) i;
INSERT INTO web_events VALUES (NULL, 1002, 'view', 'kids-bike', 'bikes', NULL, :now::timestamptz - interval '5 hours');

INSERT INTO orders VALUES
  (1, 1001, 'Ann@Example.com', 'boot-1', 149.00, :now::timestamptz - interval '400 days'),
  (2, 1001, 'Ann@Example.com', 'runner-2', 119.00, :now::timestamptz - interval '3 days'),
  (3, 1002, 'bob@example.com', 'kids-bike', 249.00, :now::timestamptz - interval '20 days');
INSERT INTO email_events
SELECT 'ann@example.com', 'spring-' || i, CASE WHEN i % 2 = 0 THEN 'open' ELSE 'sent' END,
       :now::timestamptz - (10 - i) * interval '5 days'
FROM generate_series(1, 9) i;
INSERT INTO email_events VALUES ('bob@example.com', 'spring-1', 'open', :now::timestamptz - interval '250 days');
-- loyalty events arrive out of order: gold is the latest by event time
INSERT INTO loyalty_events VALUES
  ('L-9', 1001, 'gold',   2350, :now::timestamptz - interval '2 days'),
  ('L-9', 1001, 'silver', 1800, :now::timestamptz - interval '40 days'),
  ('L-9', 1001, 'bronze',  400, :now::timestamptz - interval '300 days');
INSERT INTO support_tickets VALUES
  ('ann@example.com', 'open', 'negative', :now::timestamptz - interval '6 hours'),
  ('bob@example.com', 'closed', 'positive', :now::timestamptz - interval '60 days');
SELECT 'web_events' AS source, count(*) FROM web_events UNION ALL SELECT 'orders', count(*) FROM orders
UNION ALL SELECT 'email_events', count(*) FROM email_events UNION ALL SELECT 'loyalty_events', count(*) FROM loyalty_events
UNION ALL SELECT 'support_tickets', count(*) FROM support_tickets;

\echo '== Identity resolution: the five systems'' identifiers stitched into shoppers =='
\o /dev/null
SELECT create_namespace('customer_id',  priority => 100, max_per_profile => 1);
SELECT create_namespace('loyalty_no',   priority => 90,  max_per_profile => 1);
SELECT create_namespace('email',        priority => 50,  max_per_profile => 3,
                        normalizer => 'personalize.normalize_email(text)', blocked => '{test@example.com}');
SELECT create_namespace('anonymous_id', priority => 10);
\o
SELECT name, priority, max_per_profile, normalizer, blocked FROM namespaces ORDER BY priority DESC;
-- every event's identifiers, as the streaming worker will pass them; a store kiosk
-- cookie is seen with both customers (two customer ids never merge)
INSERT INTO web_events VALUES ('kiosk-3', 1001, 'view', 'wool-socks', 'socks', NULL, :now::timestamptz - interval '30 days'),
                              ('kiosk-3', 1002, 'view', 'kids-bike', 'bikes', NULL, :now::timestamptz - interval '29 days');
SELECT count(identify(jsonb_build_object('anonymous_id', anonymous_id, 'customer_id', customer_id))) AS web_events
FROM (SELECT * FROM web_events ORDER BY ts) w;
SELECT count(identify(jsonb_build_object('customer_id', customer_id, 'email', email))) AS orders FROM orders;
SELECT count(identify(jsonb_build_object('loyalty_no', loyalty_no, 'customer_id', customer_id))) AS loyalty FROM loyalty_events;
SELECT count(identify(jsonb_build_object('email', email))) AS email_and_support
FROM (SELECT email FROM email_events UNION ALL SELECT email FROM support_tickets) e;
SELECT p.key_value AS shopper, string_agg(i.namespace || ':' || i.value, ', ' ORDER BY i.namespace, i.value) AS identifiers
FROM profiles p, identifiers(p.id) i GROUP BY 1 ORDER BY 1;
\echo 'the refused link (kept for review) and the merge log:'
SELECT rule, rule_namespace, namespace_a || ':' || value_a AS kept_with, namespace_b || ':' || value_b AS refused
FROM refused_links;
SELECT action, namespace_a || ':' || value_a AS linked, namespace_b || ':' || value_b AS "with"
FROM merge_log ORDER BY id;
SELECT resolve('anonymous_id', 'a-77') = resolve('email', ' ANN@example.com') AS "a-77 is Ann";

\echo '== Session intent of an anonymous visitor, before login (scenario 4) =='
SELECT anonymous_id, session_dominant_category(s) AS category, session_events(s) AS events,
       session_duration(s) AS dwell, session_last_item(s) AS last_item,
       event_value(size) AS size_filtered
FROM (SELECT anonymous_id, session_agg(ts, category, sku) s,
             last_agg(size, ts) size
      FROM web_events WHERE anonymous_id IS NOT NULL AND customer_id IS NULL GROUP BY 1) q;

\echo '== Profiles: one row per customer, every trait a state =='
CREATE TABLE public.customer_states AS
SELECT customer_id,
       recent_agg(sku, ts, 10) FILTER (WHERE kind IN ('view', 'cart')) AS recently_viewed,
       top_agg(category, ts, 20, '14 days') AS category_affinity,
       session_agg(ts, category, sku) AS session,
       windowed_agg(ts) AS activity
FROM web_events WHERE customer_id IS NOT NULL GROUP BY customer_id;
SELECT customer_id, pg_column_size(recently_viewed) + pg_column_size(category_affinity)
       + pg_column_size(session) + pg_column_size(activity) AS bytes
FROM customer_states ORDER BY 1;

\echo '== Login: the anonymous states merge into customer 1001 (||), no history lost =='
UPDATE customer_states p SET recently_viewed = p.recently_viewed || a.recent,
                      category_affinity = p.category_affinity || a.affinity,
                      session = p.session || a.session,
                      activity = p.activity || a.activity
FROM (SELECT recent_agg(sku, ts, 10) FILTER (WHERE kind IN ('view', 'cart')) recent,
             top_agg(category, ts, 20, '14 days') affinity,
             session_agg(ts, category, sku) session, windowed_agg(ts) activity
      FROM web_events WHERE anonymous_id = 'a-77' AND customer_id IS NULL) a
WHERE p.customer_id = 1001;
SELECT customer_id, session_start(session) AS session_start, session_events(session) AS session_events,
       windowed_count(activity, '1 hour', :now) AS events_last_hour
FROM customer_states WHERE customer_id = 1001;

\echo '== Scenario 1: on any page of the session, the model viewed most recently =='
SELECT customer_id, (recent_values(recently_viewed))[1] AS show_model
FROM customer_states WHERE customer_id = 1001;

\echo '== Scenario 2: browse-and-abandon: viewed or carted this session, not bought =='
SELECT customer_id,
       array(SELECT r.value FROM recent_items(recently_viewed) r
             WHERE r.ts >= session_start(session)
               AND r.value NOT IN (SELECT sku FROM orders o WHERE o.customer_id = p.customer_id)
             ORDER BY r.ts DESC) AS follow_up_email
FROM customer_states p WHERE customer_id = 1001;

\echo '== Scenario 3: negative support ticket in the last 24 hours: suppress promotions =='
SELECT lower(email) AS email, event_value(last_agg(sentiment, ts)) AS sentiment,
       coalesce(windowed_count(windowed_agg(ts) FILTER (WHERE sentiment = 'negative'), '24 hours', :now) > 0,
                false) AS suppress_promotions
FROM support_tickets GROUP BY 1 ORDER BY 1;

\echo '== Scenario 5: opened one of the last three campaigns; no engagement in six months =='
SELECT email,
       array(SELECT v FROM unnest(recent_values(recent_agg(campaign, ts, 3) FILTER (WHERE kind = 'open'))) v) AS opened_recently,
       event_time(last_agg(kind, ts) FILTER (WHERE kind = 'open')) < :now::timestamptz - interval '6 months' AS dormant
FROM email_events GROUP BY email ORDER BY 1;

\echo '== Scenario 6: loyalty tier by event time, though events arrived out of order =='
SELECT customer_id, event_value(last_agg(tier, ts)) AS tier, event_value(last_agg(points, ts))::int AS points
FROM loyalty_events GROUP BY 1;

\echo '== Scenario 7: category affinity, decayed: what they like now, not two years ago =='
SELECT customer_id, top_values(category_affinity, 2) AS likes_now,
       (SELECT array_agg(round(w::numeric, 3)) FROM unnest((top_weights(category_affinity, :now))[1:2]) w) AS weights_now
FROM customer_states ORDER BY 1;
