-- Built-in: exact, but PostgreSQL 15 cannot partially aggregate count(DISTINCT).
SELECT shopper, count(DISTINCT product_id) AS products_viewed
FROM events
GROUP BY shopper;
