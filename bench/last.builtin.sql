-- Built-in: sort each shopper's views by time, newest first, and take the first.
SELECT shopper, (array_agg(sku ORDER BY ts DESC))[1] AS last_sku
FROM events
GROUP BY shopper;
