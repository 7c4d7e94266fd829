-- Sources, traits and profiles (SPEC §3): registering event tables,
-- defining traits, the typed profile view, rebuild and backfill, and the
-- errors of bad configuration.  Runs in a database of its own, with the
-- example shop of test/shop/.
\set regress_db :DBNAME
CREATE DATABASE pz_sources;
\c pz_sources
SET client_min_messages = warning;
CREATE EXTENSION personalize;
SET search_path = personalize, public;
SET TimeZone = 'UTC';
\pset null '(null)'
\i test/shop/schema.sql
SELECT create_namespace('customer_id',  priority => 100, max_per_profile => 1);
SELECT create_namespace('loyalty_no',   priority => 90,  max_per_profile => 1);
SELECT create_namespace('email',        priority => 50,  max_per_profile => 5,
           normalizer => 'personalize.normalize_email(text)', blocked => '{test@example.com}');
SELECT create_namespace('phone',        priority => 40,  max_per_profile => 3,
           normalizer => 'personalize.normalize_phone(text)');
SELECT create_namespace('anonymous_id', priority => 10);

-- ===== a small shop, checked by hand =======================================

-- anonymous visitor a-1 browses running shoes in size 44, then logs in as customer 7
INSERT INTO shop.web_events (anonymous_id, customer_id, event_type, sku, category, props, ts) VALUES
  ('a-1', NULL, 'product_view', 'shoe-a', 'running', '{"size": "44"}', '2026-03-01 10:00+00'),
  ('a-1', NULL, 'filter',       NULL,     'running', '{"size": "44"}', '2026-03-01 10:02+00'),
  ('a-1', NULL, 'product_view', 'shoe-b', 'running', '{"size": "44"}', '2026-03-01 10:05+00'),
  ('a-1', NULL, 'product_view', 'sock-1', 'socks',   NULL,             '2026-03-01 10:07+00'),
  ('a-1', 7,    'login',        NULL,     NULL,      NULL,             '2026-03-01 10:09+00'),
  ('a-1', 7,    'add_to_cart',  'shoe-b', 'running', '{"size": "45"}', '2026-03-01 10:10+00'),
  ('a-2', NULL, 'product_view', 'tent-1', 'tents',   NULL,             '2026-03-01 11:00+00');
-- customer 7 orders twice (the email written two ways); customer 8 once
INSERT INTO shop.orders VALUES
  (1, 7, 'Ann@Example.com ', 'shoe-b', 'running', 119.90, '2026-03-01 10:15+00'),
  (2, 7, 'ann@example.com',  'sock-1', 'socks',     9.50, '2026-02-01 09:00+00'),
  (3, 8, 'bob@example.com',  'tent-1', 'tents',   249.00, '2026-02-15 12:00+00');
-- loyalty events arrive out of order: gold is the latest by event time
INSERT INTO shop.loyalty_events VALUES
  ('L-9', 7,    'gold',   2350, '2026-02-28 00:00+00'),
  ('L-9', NULL, 'silver', 1800, '2026-01-10 00:00+00');
INSERT INTO shop.email_events VALUES
  ('ann@example.com', 'spring-1', 'sent', '2026-02-01 08:00+00'),
  ('ann@example.com', 'spring-1', 'open', '2026-02-01 09:00+00'),
  ('ANN@example.com', 'spring-2', 'open', '2026-02-10 09:00+00'),
  ('bob@example.com', 'spring-1', 'sent', '2026-02-01 08:00+00');
-- a ticket by phone only, and one from the blocked test address
INSERT INTO shop.support_tickets (email, phone, status, sentiment, opened_at) VALUES
  ('ann@example.com', '+1 415 555 0100', 'open', 'negative', '2026-03-01 09:00+00'),
  (NULL, '+1 (415) 555-0100', 'closed', 'neutral', '2026-03-01 12:00+00'),
  ('test@example.com', NULL, 'open', 'positive', '2026-03-01 12:00+00');

-- registering sources with rows already there backfills them
SELECT register_source('shop.web_events',
           identifiers => '{"anonymous_id": "anonymous_id", "customer_id": "customer_id"}',
           event_time => 'ts', event_type_column => 'event_type',
           fields => '{"size": {"column": "props", "key": "size"}, "query": "search_query"}');
SELECT register_source('shop.orders', '{"customer_id": "customer_id", "email": "email"}', 'ordered_at',
           event_type => 'order');
SELECT register_source('shop.loyalty_events', '{"loyalty_no": "loyalty_no", "customer_id": "customer_id"}', 'ts',
           event_type => 'loyalty');
SELECT register_source('shop.email_events', '{"email": "email"}', 'ts', event_type_column => 'event_type');
SELECT register_source('shop.support_tickets', '{"email": "email", "phone": "phone"}', 'opened_at',
           event_type => 'ticket');
SELECT s.relation, s.event_time_column, s.event_type_column, s.event_type,
       (SELECT string_agg(si.column_name || ' -> ' || n.name, ', ' ORDER BY si.column_name)
          FROM source_identifiers si JOIN namespaces n ON n.id = si.namespace_id WHERE si.source_id = s.id) AS identifiers
  FROM sources s ORDER BY s.id;
-- one profile per shopper: a-1, customer 7, ann's email and her loyalty number
-- are one (the phone-only ticket too: her phone came with her email on the first);
-- the ticket from the blocked test address goes to no profile
SELECT key_namespace, key_value, first_seen, last_seen FROM profile_view ORDER BY key_namespace, key_value;

-- traits
SELECT add_trait('last_viewed', 'recent', field => 'sku', event_types => '{product_view,add_to_cart}', n => 3);
SELECT add_trait('last_size', 'last', field => 'size');
SELECT add_trait('affinity', 'top', field => 'category', n => 2, half_life => '7 days');
SELECT add_trait('orders', 'count', sources => '{shop.orders}');
SELECT add_trait('spent', 'sum', field => 'amount');
SELECT add_trait('cheapest', 'min', field => 'amount');
SELECT add_trait('biggest', 'max', field => 'amount');
SELECT add_trait('first_bought', 'first', field => 'sku', sources => '{shop.orders}');
SELECT add_trait('tier', 'last', field => 'tier');
SELECT add_trait('opens', 'windowed_count', sources => '{shop.email_events}', event_types => '{open}',
                 windows => '{1 hour, 24 hours, 30 days}');
SELECT add_trait('spend_in', 'windowed_sum', field => 'amount', windows => '{7 days}');
SELECT add_trait('products', 'distinct', field => 'sku', hll_precision => 10);
SELECT add_trait('visit', 'session', field => 'category', item_field => 'sku', sources => '{shop.web_events}');
SELECT add_trait('sentiment', 'last', field => 'sentiment');
SELECT id, name, kind, field, sources, event_types, n, half_life, windows, gap, hll_precision FROM traits ORDER BY id;

-- the view: one typed column per trait, with comments
SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(a.attrelid, a.attnum)
  FROM pg_attribute a WHERE a.attrelid = 'personalize.profile_view'::regclass AND a.attnum > 0 ORDER BY a.attnum;
\x on
SELECT key_namespace, key_value, last_viewed, last_size, last_size_at, affinity, orders, spent, cheapest,
       biggest, first_bought, tier, tier_at, products, visit, sentiment
  FROM profile_view WHERE profile_id = resolve('anonymous_id', 'a-1');
\x off
SELECT key_value, orders, spent, biggest, tier, sentiment, products FROM profile_view ORDER BY key_namespace, key_value;

-- one profile as jsonb, by any of its identifiers
SELECT get_profile('email', ' ANN@example.com') = get_profile('anonymous_id', 'a-1') AS same_profile,
       get_profile('loyalty_no', 'L-9') ->> 'tier' AS tier,
       get_profile('customer_id', '7') -> 'last_viewed' AS last_viewed;
SELECT get_profile('anonymous_id', 'never-seen') IS NULL AS unknown_is_null;
-- session intent of the anonymous visitor who never logged in
SELECT session_intent('anonymous_id', 'a-2');

-- ===== streaming-equivalent increments equal a rebuild =====================

CREATE TABLE before AS SELECT id, states, first_seen, last_seen FROM profiles;
SELECT rebuild() AS profiles_with_events;
SELECT count(*) AS differ FROM before b FULL JOIN profiles p USING (id)
 WHERE b.states IS DISTINCT FROM p.states OR b.first_seen IS DISTINCT FROM p.first_seen
    OR b.last_seen IS DISTINCT FROM p.last_seen;
-- a profile whose states were damaged is rebuilt alone
UPDATE profiles SET states = '{}' WHERE id = resolve('customer_id', '8');
SELECT rebuild(resolve('customer_id', '8')) AS rebuilt;
SELECT count(*) AS differ FROM before b JOIN profiles p USING (id) WHERE b.states <> p.states;

-- windows are evaluated against now(); rows written after registration
-- reach the profiles through rebuild() (or the streaming worker)
INSERT INTO shop.email_events VALUES
  ('ann@example.com', 'spring-3', 'open',  now() - interval '10 minutes'),
  ('ann@example.com', 'spring-3', 'click', now() - interval '2 hours'),
  ('bob@example.com', 'spring-3', 'open',  now() - interval '3 days');
SELECT key_value, opens_1h, opens_24h, opens_30d FROM profile_view ORDER BY key_namespace, key_value;
SELECT rebuild() AS profiles_with_events;
SELECT key_value, opens_1h, opens_24h, opens_30d FROM profile_view ORDER BY key_namespace, key_value;

-- new events and a new source: register backfills exactly its own rows
CREATE TABLE shop.reviews (customer bigint, sku text, stars integer, written timestamptz);
INSERT INTO shop.reviews VALUES (7, 'shoe-b', 5, '2026-03-02 10:00+00'), (8, 'tent-1', 2, '2026-03-03 10:00+00');
SELECT register_source('shop.reviews', '{"customer": "customer_id"}', 'written', event_type => 'review');
SELECT key_value, spent, products, last_seen > '2026-03-02' AS seen_since FROM profile_view WHERE key_namespace = 'customer_id' ORDER BY 1;
SELECT add_trait('stars', 'max', field => 'stars', sources => '{shop.reviews}');
SELECT key_value, stars FROM profile_view WHERE key_namespace = 'customer_id' ORDER BY 1;

-- ===== changing traits regenerates the view ================================

SELECT alter_trait('last_viewed', n => 1);
SELECT last_viewed FROM profile_view WHERE profile_id = resolve('customer_id', '7');
SELECT alter_trait('orders', kind => 'windowed_count', windows => '{90 days}');
SELECT attname FROM pg_attribute WHERE attrelid = 'personalize.profile_view'::regclass AND attname LIKE 'orders%';
SELECT alter_trait('orders', all_sources => true, kind => 'count');
SELECT key_value, orders FROM profile_view ORDER BY key_namespace, key_value;
SELECT drop_trait('stars');
SELECT count(*) AS stars_columns FROM pg_attribute WHERE attrelid = 'personalize.profile_view'::regclass AND attname = 'stars';
SELECT count(*) AS profiles_holding_stars FROM profiles, traits t WHERE t.name = 'affinity'
   AND 16 = ANY (profile_traits(states));
SELECT rebuild() > 0 AS rebuilt;
SELECT count(*) AS differ_after_changes FROM before b JOIN profiles p USING (id)
 WHERE profile_get(b.states, 5, NULL::metric_state) IS DISTINCT FROM profile_get(p.states, 5, NULL::metric_state);

-- ===== bad configuration ===================================================

SELECT register_source('shop.nope', '{"email": "email"}', 'ts');
SELECT register_source('shop.orders', '{"email": "email"}', 'ordered_at');
CREATE VIEW shop.a_view AS SELECT * FROM shop.orders;
SELECT register_source('shop.a_view', '{"email": "email"}', 'ordered_at');
SELECT register_source('personalize.profiles', '{"key_value": "email"}', 'updated_at');
CREATE TABLE shop.other (email text, amount numeric, ts timestamptz, at_text text, props jsonb, tags text[],
                         "x""; DROP TABLE shop.orders; --" text);
CREATE TEMP TABLE temp_events (email text, ts timestamptz);
SELECT register_source('temp_events', '{"email": "email"}', 'ts');
SELECT register_source('shop.other', '{"mail": "email"}', 'ts');
SELECT register_source('shop.other', '{"email": "fax"}', 'ts');
SELECT register_source('shop.other', '{"email": "email"}', 'at_text');
SELECT register_source('shop.other', '{"email": "email"}', 'no_such_column');
SELECT register_source('shop.other', '{"email": 5}', 'ts');
SELECT register_source('shop.other', '{}', 'ts');
SELECT register_source('shop.other', '["email"]', 'ts');
SELECT register_source('shop.other', '{"tags": "email"}', 'ts');
SELECT register_source('shop.other', '{"email": "email", "at_text": "email"}', 'ts');
SELECT register_source('shop.other', '{"email": "email"}', 'ts', event_type => 'x', event_type_column => 'at_text');
SELECT register_source('shop.other', '{"email": "email"}', 'ts', fields => '{"size": {"column": "at_text", "key": "size"}}');
SELECT register_source('shop.other', '{"email": "email"}', 'ts', fields => '{"Size": "at_text"}');
SELECT register_source('shop.other', '{"email": "email"}', 'ts', fields => '{"size": 3}');
SELECT register_source('shop.other', '{"email": "email"}', 'ts', fields => '{"tags": "tags"}');
-- names from users are quoted, never spliced: this column is just a column
SELECT register_source('shop.other', '{"x\"; DROP TABLE shop.orders; --": "email"}', 'ts', backfill => false);
SELECT unregister_source('shop.other');
SELECT unregister_source('shop.other');
SELECT count(*) AS orders_still_there FROM shop.orders;

SELECT add_trait('last_viewed', 'recent', field => 'sku');
SELECT add_trait('x"; DROP TABLE shop.orders; --', 'count');
SELECT add_trait('Spent', 'count');
SELECT add_trait('first_seen', 'count');
SELECT add_trait('t', 'median', field => 'amount');
SELECT add_trait('t', 'recent');
SELECT add_trait('t', 'recent', field => 'sku', n => 0);
SELECT add_trait('t', 'count', n => 3);
SELECT add_trait('t', 'top', field => 'sku', half_life => '-1 day');
SELECT add_trait('t', 'windowed_count', windows => '{30 seconds}');
SELECT add_trait('t', 'windowed_count', windows => '{1 hour, 60 minutes}');
SELECT add_trait('t', 'distinct', field => 'sku', hll_precision => 20);
SELECT add_trait('t', 'last', field => 'sku', event_types => '{}');
SELECT add_trait('t', 'last', field => 'sku', sources => '{shop.other}');
SELECT add_trait('t', 'last', field => 'no_field', sources => '{shop.orders}');
SELECT add_trait('t', 'last', field => 'x"; DROP TABLE shop.orders; --');
SELECT add_trait('orders_in', 'count');
SELECT add_trait('orders_in', 'count', backfill => false);
SELECT add_trait('orders_x', 'windowed_count', windows => '{1 hour}');
SELECT add_trait('orders_x_1h', 'count');
SELECT drop_trait('orders_x');
SELECT drop_trait('orders_in');
SELECT alter_trait('nope', n => 3);
SELECT drop_trait('nope');
SELECT unregister_source('shop.orders');
-- a registered source cannot be dropped; unregistered, it can
DROP TABLE shop.reviews;
DROP SCHEMA shop CASCADE;
SELECT unregister_source('shop.reviews');
DROP TABLE shop.reviews;
SELECT rebuild(NULL::bigint);
SELECT rebuild(42);

-- ===== privileges: reading profiles and changing configuration are separate grants

CREATE ROLE pz_src_reader LOGIN;
CREATE ROLE pz_src_admin LOGIN;
CREATE ROLE pz_src_nobody LOGIN;
GRANT personalize_reader TO pz_src_reader;
GRANT personalize_admin TO pz_src_admin;
GRANT USAGE ON SCHEMA shop TO pz_src_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA shop TO pz_src_admin;
SET ROLE pz_src_nobody;
-- the drop guard runs at every DROP, for every role, without their grants
CREATE TEMP TABLE nobodys (x int);
DROP TABLE nobodys;
SELECT count(*) FROM personalize.profile_view;
SELECT personalize.get_profile('customer_id', '7');
SELECT personalize.add_trait('t', 'count');
SET ROLE pz_src_reader;
SELECT count(*) > 0 AS reader_reads FROM personalize.profile_view;
SELECT personalize.get_profile('customer_id', '7') ->> 'tier' AS tier;
SELECT personalize.add_trait('t', 'count');
SELECT personalize.rebuild();
SET ROLE pz_src_admin;
SELECT personalize.add_trait('t', 'count', sources => '{shop.orders}') > 0 AS admin_adds;
SELECT personalize.drop_trait('t');
RESET ROLE;

\c :regress_db
DROP DATABASE pz_sources;
DROP ROLE pz_src_reader, pz_src_admin, pz_src_nobody;

-- a field's text as a number: the stream's reading (src/field.c, a fast path
-- for up to 18 digits without an exponent) is numeric_in's, value and scale
SELECT t AS text, personalize._field_number(t)::text AS stream, (trim(t)::numeric)::text AS numeric_in,
       personalize._field_number(t)::text IS NOT DISTINCT FROM (trim(t)::numeric)::text AS same
  FROM unnest(ARRAY['5', '-5', '+5', ' 42 ', '1.50', '-0', '-0.00', '0.000', '.5', '5.', '007',
                    '123456789012345678', '-123456789012345678', '1234567890123456789',
                    '0.000000000000000001', '99999999.999999999', '12345678901234567890.5',
                    '1e3', '-2.5E-2', '1.25e+2']) t;
SELECT t AS text, personalize._field_number(t) AS stream
  FROM unnest(ARRAY['', ' ', '-', '.', '1.2.3', '1e', '1e10000', 'abc', '12a', '--1', '1 2']) t;

-- the Citus functions where Citus is not installed (test/t/015_citus.pl runs them on a cluster)
SELECT personalize.citus_sync_config();
SELECT personalize._citus_take_config('{"namespaces": [], "sources": [], "traits": []}');
SELECT personalize._citus_node_config() IS NULL AS no_config_to_send,
       personalize._citus_is_coordinator() AS coordinator,
       personalize._citus_unstreamed_reason('pg_class') IS NULL AS no_reason;
SELECT count(*) = (SELECT count(*) FROM personalize.worker_status) AS local_rows_only,
       count(*) FILTER (WHERE node <> 'local') = 0 AS no_other_node
  FROM personalize.node_worker_status;
