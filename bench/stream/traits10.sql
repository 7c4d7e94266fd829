-- bench/stream/traits10.sql: five more traits on orders for the apply-rate
-- measurement of bench/stream/run, ten in all, one of every kind but min
-- and session: category affinity (top, 14-day half-life), orders and spend
-- by window, distinct SKUs (HyperLogLog), the first SKU.
SELECT personalize.add_trait('category_affinity', 'top', field => 'category', n => 10,
           half_life => '14 days', backfill => false);
SELECT personalize.add_trait('orders_in', 'windowed_count', backfill => false);
SELECT personalize.add_trait('spend_in', 'windowed_sum', field => 'amount', backfill => false);
SELECT personalize.add_trait('skus_seen', 'distinct', field => 'sku', backfill => false);
SELECT personalize.add_trait('first_sku', 'first', field => 'sku', backfill => false);
