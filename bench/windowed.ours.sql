-- windowed_agg: one state per shopper answers every window; read four.
SELECT shopper,
       windowed_count(w, '1 hour', :at)   AS last_hour,
       windowed_count(w, '24 hours', :at) AS last_day,
       windowed_count(w, '7 days', :at)   AS last_week,
       windowed_count(w, '30 days', :at)  AS last_month
FROM (SELECT shopper, windowed_agg(ts) AS w FROM events GROUP BY shopper) AS states;
