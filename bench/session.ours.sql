-- session_agg: each shopper's current visit (cut by 30 minutes of inactivity).
SELECT shopper,
       session_start(s)             AS session_start,
       session_last_activity(s)     AS last_activity,
       session_events(s)            AS events,
       session_dominant_category(s) AS dominant_category,
       session_last_item(s)         AS last_item
FROM (SELECT shopper, session_agg(ts, category, sku) AS s FROM events GROUP BY shopper) AS states;
