-- recent_agg: each shopper's 10 most recently viewed distinct SKUs.
SELECT shopper, recent_values(recent_agg(sku, ts, 10)) AS recent_skus
FROM events
GROUP BY shopper;
