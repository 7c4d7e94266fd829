-- distinct_agg: how many distinct products each shopper viewed (HyperLogLog).
SELECT shopper, distinct_count(distinct_agg(product_id)) AS products_viewed
FROM events
GROUP BY shopper;
