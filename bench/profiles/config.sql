-- bench/profiles/config.sql: test/shop/config.sql with backfill => false on
-- every source and trait, so that nothing is computed until the timed
-- personalize.rebuild() in bench/profiles/run.  Keep it in step with
-- test/shop/config.sql (bench/profiles/run checks the trait names match).
SELECT personalize.create_namespace('customer_id',  priority => 100, max_per_profile => 1);
SELECT personalize.create_namespace('loyalty_no',   priority => 90,  max_per_profile => 1);
SELECT personalize.create_namespace('email',        priority => 50,  max_per_profile => 5,
           normalizer => 'personalize.normalize_email(text)', blocked => '{test@example.com}');
SELECT personalize.create_namespace('phone',        priority => 40,  max_per_profile => 3,
           normalizer => 'personalize.normalize_phone(text)');
SELECT personalize.create_namespace('anonymous_id', priority => 10);

SELECT personalize.register_source('shop.orders',
           identifiers => '{"customer_id": "customer_id", "email": "email"}',
           event_time => 'ordered_at', event_type => 'order', backfill => false);
SELECT personalize.register_source('shop.web_events',
           identifiers => '{"anonymous_id": "anonymous_id", "customer_id": "customer_id"}',
           event_time => 'ts', event_type_column => 'event_type',
           fields => '{"size": {"column": "props", "key": "size"}, "query": "search_query"}', backfill => false);
SELECT personalize.register_source('shop.email_events',
           identifiers => '{"email": "email"}',
           event_time => 'ts', event_type_column => 'event_type', backfill => false);
SELECT personalize.register_source('shop.loyalty_events',
           identifiers => '{"loyalty_no": "loyalty_no", "customer_id": "customer_id"}',
           event_time => 'ts', event_type => 'loyalty', backfill => false);
SELECT personalize.register_source('shop.support_tickets',
           identifiers => '{"email": "email", "phone": "phone"}',
           event_time => 'opened_at', event_type => 'ticket', backfill => false);

-- scenario 1 and 2: what they looked at, in what size
SELECT personalize.add_trait('last_viewed', 'recent', field => 'sku',
           event_types => '{product_view,add_to_cart}', n => 10, backfill => false);
SELECT personalize.add_trait('last_size', 'last', field => 'size', backfill => false);
-- scenario 7: category affinity, decayed
SELECT personalize.add_trait('category_affinity', 'top', field => 'category',
           sources => '{shop.web_events,shop.orders}', n => 10, half_life => '14 days', backfill => false);
-- scenario 4: the current visit
SELECT personalize.add_trait('session', 'session', field => 'category', item_field => 'sku',
           sources => '{shop.web_events}', backfill => false);
-- orders
SELECT personalize.add_trait('orders', 'count', sources => '{shop.orders}', backfill => false);
SELECT personalize.add_trait('lifetime_value', 'sum', field => 'amount', sources => '{shop.orders}', backfill => false);
SELECT personalize.add_trait('largest_order', 'max', field => 'amount', sources => '{shop.orders}', backfill => false);
SELECT personalize.add_trait('orders_in', 'windowed_count', sources => '{shop.orders}', backfill => false);
SELECT personalize.add_trait('bought', 'recent', field => 'sku', sources => '{shop.orders}', n => 20, backfill => false);
-- scenario 5: email engagement
SELECT personalize.add_trait('campaigns_opened', 'recent', field => 'campaign',
           event_types => '{open,click}', n => 3, backfill => false);
SELECT personalize.add_trait('last_email_engagement', 'last', field => 'campaign',
           event_types => '{open,click}', backfill => false);
-- scenario 6: loyalty, by event time
SELECT personalize.add_trait('loyalty_tier', 'last', field => 'tier', backfill => false);
SELECT personalize.add_trait('loyalty_points', 'last', field => 'points', backfill => false);
-- scenario 3: support
SELECT personalize.add_trait('ticket_sentiment', 'last', field => 'sentiment',
           sources => '{shop.support_tickets}', backfill => false);
SELECT personalize.add_trait('products_seen', 'distinct', field => 'sku',
           sources => '{shop.web_events}', backfill => false);
