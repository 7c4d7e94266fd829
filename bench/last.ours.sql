-- last_agg: the last SKU each shopper viewed.
SELECT shopper, event_value(last_agg(sku, ts)) AS last_sku
FROM events
GROUP BY shopper;
