-- The demo, live: while two writers stream shop traffic into the tables,
-- one shopper's story, each step a plain INSERT by the system it comes from
-- and the profile read back the moment it is visible, with how many
-- milliseconds after the insert (its commit included) that was; audience
-- entries and a consumer's reaction to them, one of them driven by time
-- alone; then freshness under load, the profile view, and the worker's own
-- figures.  Run by demo/run.
\set ON_ERROR_STOP 1
\pset footer off
SET search_path = personalize, public;
SET TimeZone = 'UTC';

\echo
\echo '== The shop''s five systems write their own tables; the worker follows the WAL =='
SELECT s.relation AS source_table, string_agg(n.name, ', ' ORDER BY n.priority DESC) AS identifiers
  FROM sources s JOIN source_identifiers si ON si.source_id = s.id JOIN namespaces n ON n.id = si.namespace_id
 GROUP BY s.id, s.relation ORDER BY s.id;
\echo 'traffic from two writers, one row per transaction; the worker every second:'
SELECT * FROM demo.watch(5);

\echo
\echo '== 1. An anonymous visitor compares running shoes in size 44 (web tracking) =='
WITH e AS (INSERT INTO shop.web_events (anonymous_id, event_type, sku, category, props, ts) VALUES
    ('visitor-77', 'product_view', 'trail-runner-2', 'running shoes', '{"size": "44"}', now() - interval '4 min'),
    ('visitor-77', 'filter',       NULL,             'running shoes', '{"size": "44"}', now() - interval '3 min'),
    ('visitor-77', 'product_view', 'road-glide-5',   'running shoes', '{"size": "44"}', now())
  RETURNING 1)
SELECT clock_timestamp() AS committed FROM e LIMIT 1 \gset
SELECT demo.ms_until(:'committed', $$SELECT (session_intent('anonymous_id', 'visitor-77') -> 'session' ->> 'events') = '3'$$)
       AS visible_after_ms;
\echo 'scenario 4, intent of the session before login:'
SELECT s ->> 'dominant_category' AS category, s ->> 'last_item' AS last_item, s ->> 'events' AS events,
       get_profile('anonymous_id', 'visitor-77') ->> 'last_size' AS size
  FROM (SELECT session_intent('anonymous_id', 'visitor-77') -> 'session' AS s) i;

\echo
\echo '== 2. They log in as customer 42: the login row carries the cookie and the customer id =='
WITH e AS (INSERT INTO shop.web_events (anonymous_id, customer_id, event_type, ts) VALUES ('visitor-77', 42, 'login', now())
  RETURNING 1)
SELECT clock_timestamp() AS committed FROM e LIMIT 1 \gset
SELECT demo.ms_until(:'committed',
       $$SELECT resolve('anonymous_id', 'visitor-77') = resolve('customer_id', '42')$$) AS merged_after_ms;
\echo 'scenario 1, the model viewed most recently, and the anonymous history now in the customer''s profile:'
SELECT last_viewed[1] AS show_model, last_viewed[1:3] AS last_viewed, category_affinity[1:2] AS likes,
       session ->> 'events' AS session_events
  FROM profile_view WHERE profile_id = resolve('customer_id', '42');

\echo
\echo '== 3. They order, the address typed as ever (commerce platform) =='
SELECT coalesce(lifetime_value, 0) AS spent_before FROM profile_view WHERE profile_id = resolve('customer_id', '42') \gset
WITH e AS (INSERT INTO shop.orders (order_id, customer_id, email, sku, category, amount, ordered_at)
  VALUES (nextval('shop.traffic_order_id'), 42, '  C42@Example.COM', 'road-glide-5', 'running shoes', 139.00, now())
  RETURNING 1)
SELECT clock_timestamp() AS committed FROM e LIMIT 1 \gset
SELECT demo.ms_until(:'committed', format($$SELECT lifetime_value > %s FROM personalize.profile_view
                                            WHERE profile_id = personalize.resolve('customer_id', '42')$$, :spent_before))
       AS visible_after_ms;
\echo 'scenario 2, viewed and not bought; orders, lifetime value, and the email now known:'
SELECT array(SELECT v FROM unnest(last_viewed) v WHERE v <> ALL (bought)) AS follow_up_email,
       orders, lifetime_value, bought[1] AS just_bought,
       (SELECT string_agg(value, ', ') FROM identifiers(profile_id) WHERE namespace = 'email') AS email
  FROM profile_view WHERE profile_id = resolve('customer_id', '42');

\echo
\echo '== 4. An unhappy support call, by phone and email (support desk) =='
WITH e AS (INSERT INTO shop.support_tickets (email, phone, status, sentiment, opened_at)
  VALUES ('c42@example.com', '+1 415 555 0042', 'open', 'negative', now())
  RETURNING 1)
SELECT clock_timestamp() AS committed FROM e LIMIT 1 \gset
SELECT demo.ms_until(:'committed', $$SELECT get_profile('customer_id', '42') ->> 'ticket_sentiment' = 'negative'
                                      AND (get_profile('customer_id', '42') ->> 'ticket_sentiment_at')::timestamptz > now() - interval '1 minute'$$)
       AS visible_after_ms;
\echo 'scenario 3, suppress promotions after a negative ticket in the last 24 hours: an audience entry,'
\echo 'written by the worker with the profile, and the consumer''s reaction to it:'
SELECT demo.ms_until(:'committed', $$SELECT in_audience(resolve('customer_id', '42'), 'suppress_promotions')$$)
       AS entered_after_ms;
SELECT demo.ms_until(:'committed', $$SELECT EXISTS (SELECT 1 FROM demo.reactions
                                      WHERE profile_id = resolve('customer_id', '42'))$$)
       AS reaction_after_ms;
SELECT e.audience, e.entered, e.why, r.action,
       round((extract(epoch FROM r.reacted_at - r.entered_at) * 1000)::numeric, 1) AS consumer_ms
  FROM audience_events e JOIN demo.reactions r ON r.event_id = e.id
 WHERE e.profile_id = resolve('customer_id', '42');

\echo
\echo '== 5. Another visitor looks at a tent and leaves: no event comes, time passes =='
WITH e AS (INSERT INTO shop.web_events (anonymous_id, event_type, sku, category, ts)
  VALUES ('visitor-88', 'product_view', 'tent-ultralight-2', 'tents', now()) RETURNING 1)
SELECT clock_timestamp() AS committed FROM e LIMIT 1 \gset
SELECT demo.ms_until(:'committed', $$SELECT resolve('anonymous_id', 'visitor-88') IS NOT NULL$$) AS profile_after_ms;
SELECT due - last_seen AS scheduled_after_last_event FROM audience_due d JOIN profiles p ON p.id = d.profile_id
 WHERE d.profile_id = resolve('anonymous_id', 'visitor-88');
\echo 'browse abandonment, 3 seconds after the last event, with no new event:'
SELECT round(demo.ms_until(:'committed', $$SELECT in_audience(resolve('anonymous_id', 'visitor-88'), 'browse_abandoned')$$)
       / 1000, 2) AS entered_after_s;
SELECT demo.ms_until(:'committed', $$SELECT EXISTS (SELECT 1 FROM demo.reactions
                                      WHERE profile_id = resolve('anonymous_id', 'visitor-88'))$$) > 0 AS reacted;
SELECT e.audience, e.why, p.last_viewed,
       round((extract(epoch FROM e.at - (p.last_seen + interval '3 seconds')) * 1000)::numeric, 1) AS ms_after_its_moment,
       (SELECT action FROM demo.reactions r WHERE r.event_id = e.id) AS reaction
  FROM audience_events e JOIN profile_view p ON p.profile_id = e.profile_id
 WHERE e.profile_id = resolve('anonymous_id', 'visitor-88') AND e.entered;
\echo 'time-driven entries and exits under the writers'' traffic so far:'
SELECT audience, entered, count(*) AS events FROM audience_events WHERE why = 'time' GROUP BY 1, 2 ORDER BY 1, 2;

\echo
\echo '== 6. Freshness under load: 200 probes, each from its commit until its profile is visible =='
CALL demo.freshness(200);
SELECT count(*) AS probes,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p50_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p99_ms,
       round(max(ms), 1) AS max_ms
  FROM demo.probes;

\echo
\echo '== 7. One row per shopper, one typed column per trait: what a BI tool reads =='
SELECT count(*) AS shoppers, count(*) FILTER (WHERE key_namespace = 'customer_id') AS customers,
       count(*) FILTER (WHERE key_namespace = 'anonymous_id') AS anonymous, sum(orders) AS orders,
       sum(lifetime_value) AS revenue
  FROM profile_view;
\echo 'scenario 5 and 6: the best customers, their last campaign opened and their loyalty tier:'
SELECT key_value AS customer, orders, lifetime_value, orders_in_24h, campaigns_opened[1] AS last_opened,
       loyalty_tier, category_affinity[1] AS likes
  FROM profile_view WHERE key_namespace = 'customer_id' ORDER BY lifetime_value DESC NULLS LAST LIMIT 5;

\echo
\echo '== 8. The worker =='
SELECT state, events_applied, transactions, batches, profiles_written, merges, refused_links,
       dead_letters, audience_changes, lag_bytes, lag_ms, last_error
  FROM worker_status;
\echo 'audiences: members now, entries and exits so far, reactions by the consumer:'
SELECT a.name, (SELECT count(*) FROM audience_members m WHERE m.audience = a.name) AS members,
       (SELECT count(*) FROM audience_events e WHERE e.audience = a.name AND e.entered) AS entries,
       (SELECT count(*) FROM audience_events e WHERE e.audience = a.name AND NOT e.entered) AS exits,
       a.errors
  FROM audiences a ORDER BY a.id;
SELECT count(*) AS reactions,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM reacted_at - entered_at) * 1000)::numeric, 1) AS p50_entry_to_reaction_ms
  FROM demo.reactions;
\echo 'dead letters (events that could not be applied), by reason:'
SELECT left(reason, 60) AS reason, count(*) FROM dead_letters GROUP BY 1 ORDER BY 2 DESC;
