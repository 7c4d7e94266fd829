-- Built-in: one FILTERed count per window (each window is a separate column
-- fixed when the query is written; the state answers any window later).
SELECT shopper,
       count(*) FILTER (WHERE ts >= :at - interval '1 hour')   AS last_hour,
       count(*) FILTER (WHERE ts >= :at - interval '24 hours') AS last_day,
       count(*) FILTER (WHERE ts >= :at - interval '7 days')   AS last_week,
       count(*) FILTER (WHERE ts >= :at - interval '30 days')  AS last_month
FROM events
GROUP BY shopper;
