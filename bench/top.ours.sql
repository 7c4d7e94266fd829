-- top_agg: each shopper's 10 favourite categories, every view weighted by
-- 2^(-age / 7 days).
SELECT shopper, top_values(top_agg(category, ts, 10, '7 days')) AS top_categories
FROM events
GROUP BY shopper;
