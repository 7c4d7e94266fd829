-- Built-in: DISTINCT ON, which sorts the whole table by (shopper, ts DESC).
SELECT DISTINCT ON (shopper) shopper, sku AS last_sku
FROM events
ORDER BY shopper, ts DESC;
