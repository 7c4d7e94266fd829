-- bench/stream/events.sql: writes the events every COPY of the benchmark
-- loads, as CSV, to :'file' (psql -v file=... -v events=N -v customers=C).
-- Shoppers are skewed as in test/shop/generate.sql (customer 1 + floor(C u^2),
-- u uniform: low numbers are much more active); a customer's categories lean
-- to three of ten; amounts 5..305; event times spread evenly, in order, over
-- the 30 days before now, so windowed traits have recent events.  random()
-- is seeded: the same arguments give the same file.
SELECT setseed(0.42);
COPY (
    SELECT c, 'sku-' || cat || '-' || (1 + floor(50 * random())::integer), 'cat-' || cat,
           round((5 + 300 * random())::numeric, 2),
           now() - interval '30 days' * (1 - i::double precision / :events)
      FROM (SELECT i, c, 1 + (c * 7 + floor(3 * random())::integer) % 10 AS cat
              FROM (SELECT i, 1 + floor(:customers * power(random(), 2))::bigint AS c
                      FROM generate_series(1, :events) i) q) r
) TO :'file' (FORMAT csv);
