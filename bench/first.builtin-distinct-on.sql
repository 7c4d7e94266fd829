-- Built-in: DISTINCT ON, which sorts the whole table by (shopper, ts).
SELECT DISTINCT ON (shopper) shopper, sku AS first_sku
FROM events
ORDER BY shopper, ts;
