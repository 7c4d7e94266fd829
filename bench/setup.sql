-- bench/setup.sql: the synthetic event log the benchmark reads.
--   psql -v events=10000000 -v at="'2024-06-01 00:00:00+00'::timestamptz" -f bench/setup.sql
--
-- :events rows over the 90 days before :at (a fixed UTC midnight, so reads
-- are reproducible and windowed reads fall on bucket edges):
--   shopper     100 000 shoppers, skewed: floor(100000 * random()^3), so
--               shopper 0 has 2.2 % of all events and the median shopper about
--               half the mean of :events / 100 000 (bench/run prints the spread)
--   product_id  a pool of 50 000 products, skewed: floor(50000 * random()^2)
--   sku         'sku-' || product_id
--   category    ~200 categories, skewed: 'cat-' || floor(200 * random()^2)
--   ts          unique: the i-th event is i * (90 days / :events) before :at,
--               so first/last/recent have no ties to argue about
-- Rows are stored in random order (not by time), so no aggregate gets its
-- input presorted by accident.  setseed() makes the table reproducible.
\set ON_ERROR_STOP on
SET work_mem = '1GB';
SET client_min_messages = warning;
SELECT setseed(0.42);

DROP TABLE IF EXISTS events;
CREATE UNLOGGED TABLE events (
    shopper    bigint      NOT NULL,
    product_id bigint      NOT NULL,
    sku        text        NOT NULL,
    category   text        NOT NULL,
    ts         timestamptz NOT NULL
);

INSERT INTO events (shopper, product_id, sku, category, ts)
SELECT shopper, product_id, 'sku-' || product_id, category, ts
FROM (
    SELECT floor(100000 * random() ^ 3)::bigint     AS shopper,
           floor(50000 * random() ^ 2)::bigint      AS product_id,
           'cat-' || floor(200 * random() ^ 2)::int AS category,
           :at - i * (90 * 86400 * 1000000::bigint / :events) * interval '1 microsecond' AS ts
    FROM generate_series(1, :events) AS i
) AS generated
ORDER BY random();

-- Two workers even when the table is small (BENCH_EVENTS=200000): the
-- planner would otherwise size the worker count from the table size.
ALTER TABLE events SET (parallel_workers = 2);
VACUUM (ANALYZE) events;
