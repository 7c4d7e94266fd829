-- first_agg: the first SKU each shopper viewed.
SELECT shopper, event_value(first_agg(sku, ts)) AS first_sku
FROM events
GROUP BY shopper;
