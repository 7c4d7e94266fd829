-- bench/stream/triggers.sql: what a user would write instead of personalize
-- to keep the same five traits as bench/stream/config.sql (order count,
-- revenue, largest order, last SKU, the 10 most recent distinct SKUs) in a
-- profile table, maintained at insert time.  Setups c and d of
-- bench/stream/run attach one of the two functions to orders:
--   c  AFTER INSERT ... FOR EACH ROW: one upsert per event;
--   d  AFTER INSERT ... FOR EACH STATEMENT, REFERENCING NEW TABLE: one
--      grouped upsert per statement.
-- As hand-written code usually is, both assume events arrive in time
-- order: an event older than the profile's last one counts in orders,
-- revenue and largest, and leaves last SKU and the recent list alone.
CREATE TABLE customer_profiles (
    customer_id bigint PRIMARY KEY,
    orders      bigint NOT NULL,
    revenue     numeric NOT NULL,
    largest     numeric NOT NULL,
    last_sku    text NOT NULL,
    last_at     timestamptz NOT NULL,
    recent_skus text[] NOT NULL          -- distinct, newest first, at most 10
);

CREATE FUNCTION orders_profile_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO customer_profiles AS p
    VALUES (NEW.customer_id, 1, NEW.amount, NEW.amount, NEW.sku, NEW.ordered_at, ARRAY[NEW.sku])
    ON CONFLICT (customer_id) DO UPDATE
       SET orders = p.orders + 1,
           revenue = p.revenue + excluded.revenue,
           largest = greatest(p.largest, excluded.largest),
           last_sku = CASE WHEN excluded.last_at >= p.last_at THEN excluded.last_sku ELSE p.last_sku END,
           last_at = greatest(p.last_at, excluded.last_at),
           recent_skus = CASE WHEN excluded.last_at >= p.last_at
                              THEN (excluded.last_sku || array_remove(p.recent_skus, excluded.last_sku))[1:10]
                              ELSE p.recent_skus END;
    RETURN NULL;
END $$;

CREATE FUNCTION orders_profile_stmt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO customer_profiles AS p
    SELECT a.customer_id, a.orders, a.revenue, a.largest, r.skus[1], a.last_at, r.skus
      FROM (SELECT customer_id, count(*) AS orders, sum(amount) AS revenue, max(amount) AS largest,
                   max(ordered_at) AS last_at
              FROM new_orders GROUP BY customer_id) a
      JOIN (SELECT customer_id, array_agg(sku ORDER BY t DESC, sku) AS skus
              FROM (SELECT customer_id, sku, t,
                           row_number() OVER (PARTITION BY customer_id ORDER BY t DESC, sku) AS rn
                      FROM (SELECT customer_id, sku, max(ordered_at) AS t
                              FROM new_orders GROUP BY customer_id, sku) s) ranked
             WHERE rn <= 10
             GROUP BY customer_id) r USING (customer_id)
    ON CONFLICT (customer_id) DO UPDATE
       SET orders = p.orders + excluded.orders,
           revenue = p.revenue + excluded.revenue,
           largest = greatest(p.largest, excluded.largest),
           last_sku = CASE WHEN excluded.last_at >= p.last_at THEN excluded.last_sku ELSE p.last_sku END,
           last_at = greatest(p.last_at, excluded.last_at),
           recent_skus = CASE WHEN excluded.last_at >= p.last_at
                              THEN ARRAY(SELECT s FROM unnest(excluded.recent_skus || p.recent_skus)
                                                       WITH ORDINALITY u(s, o)
                                          GROUP BY s ORDER BY min(o) LIMIT 10)
                              ELSE p.recent_skus END;
    RETURN NULL;
END $$;
