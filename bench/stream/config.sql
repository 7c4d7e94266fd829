-- bench/stream/config.sql: orders registered as a personalize source (setup
-- b of bench/stream/run) with the five traits the hand-written triggers of
-- bench/stream/triggers.sql keep: order count, revenue, largest order, last
-- SKU and the 10 most recent distinct SKUs.  One identifier: the customer id.
SELECT personalize.create_namespace('customer_id', priority => 100, max_per_profile => 1);
SELECT personalize.register_source('orders', identifiers => '{"customer_id": "customer_id"}',
           event_time => 'ordered_at', event_type => 'order', backfill => false);
SELECT personalize.add_trait('orders', 'count', backfill => false);
SELECT personalize.add_trait('revenue', 'sum', field => 'amount', backfill => false);
SELECT personalize.add_trait('largest_order', 'max', field => 'amount', backfill => false);
SELECT personalize.add_trait('last_sku', 'last', field => 'sku', backfill => false);
SELECT personalize.add_trait('recent_skus', 'recent', field => 'sku', n => 10, backfill => false);
