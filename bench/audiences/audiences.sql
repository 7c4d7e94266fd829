-- bench/audiences/audiences.sql: the twenty audiences of bench/audiences/run,
-- over the profile view of bench/stream/config.sql and traits10.sql (psql
-- -v idle='60 seconds').  One row each, in the order the run creates them:
-- its 5-audience setup is the first five (two plain, a clock in seconds, a
-- window, a clock in days).  Ten read time: the clock (last_seen,
-- first_seen, last_sku_at against now() moved by an interval) or a
-- windowed column (orders_in_*, spend_in_*); the others read plain trait
-- columns.  big_order is the freshness probes' audience (the benchmark's
-- other orders are 5 .. 305); idle is the time-driven one of the
-- time-transition and polling measurements, its interval given by the run.
CREATE TABLE bench_audiences (
    ord       integer PRIMARY KEY,
    name      text NOT NULL UNIQUE,
    condition text NOT NULL
);
INSERT INTO bench_audiences VALUES
    ( 1, 'big_spenders',    'revenue > 1000'),
    ( 2, 'big_order',       'largest_order >= 1000'),
    ( 3, 'idle',            format('last_seen < now() - interval %L', :'idle')),
    ( 4, 'active_24h',      'orders_in_24h > 0'),
    ( 5, 'lapsed_7d',       $$last_seen < now() - interval '7 days'$$),
    ( 6, 'repeat_buyers',   'orders >= 5'),
    ( 7, 'new_this_week',   $$first_seen > now() - interval '7 days'$$),
    ( 8, 'hot_1h',          'orders_in_1h >= 2'),
    ( 9, 'spender_7d',      'spend_in_7d > 500'),
    (10, 'many_skus',       'skus_seen >= 20'),
    (11, 'loves_cat_3',     $$category_affinity[1] = 'cat-3'$$),
    (12, 'viewed_sku_1_1',  $$'sku-1-1' = ANY (recent_skus)$$),
    (13, 'last_in_cat_5',   $$last_sku LIKE 'sku-5-%'$$),
    (14, 'same_first_last', 'first_sku = last_sku'),
    (15, 'one_timer',       'orders = 1'),
    (16, 'vip',             'revenue > 5000 AND orders >= 20'),
    (17, 'frequent_cheap',  'orders_in_30d >= 10 AND spend_in_30d < 1000'),
    (18, 'winback',         $$orders >= 3 AND last_seen < now() - interval '14 days'$$),
    (19, 'bought_today',    $$last_sku_at > now() - interval '1 day'$$),
    (20, 'busy_week',       'orders_in_7d * 2 > orders_in_30d');
