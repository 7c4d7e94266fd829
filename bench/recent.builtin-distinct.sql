-- Built-in, the same answer as recent_agg: each SKU's latest view, then the
-- 10 latest of those per shopper.
WITH last_seen AS (
    SELECT shopper, sku, max(ts) AS last_ts
    FROM events
    GROUP BY shopper, sku
), ranked AS (
    SELECT shopper, sku, last_ts,
           row_number() OVER (PARTITION BY shopper ORDER BY last_ts DESC, sku) AS rank
    FROM last_seen
)
SELECT shopper, array_agg(sku ORDER BY rank) AS recent_skus
FROM ranked
WHERE rank <= 10
GROUP BY shopper;
