-- bench/stream/insert.sql (pgbench): one order, one transaction: the live
-- writer of every single-row measurement.  The customer is drawn as in
-- bench/stream/events.sql (1 + floor(C u^2)).  -D customers=C.
\set u random(0, 999999999)
\set c 1 + int(:customers * pow(:u / 1000000000.0, 2))
\set cat 1 + (:c * 7 + random(0, 2)) % 10
\set s random(1, 50)
\set cents random(500, 30500)
INSERT INTO orders (customer_id, sku, category, amount, ordered_at)
VALUES (:c, 'sku-' || :cat || '-' || :s, 'cat-' || :cat, :cents / 100.0, now());
