-- Built-in: sort each shopper's views by time and take the first.
SELECT shopper, (array_agg(sku ORDER BY ts))[1] AS first_sku
FROM events
GROUP BY shopper;
