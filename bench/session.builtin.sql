-- Built-in sessionization: a gap of more than 30 minutes since the shopper's
-- previous event starts a session; number the sessions with a running count;
-- keep each shopper's last session and summarize it.
WITH flagged AS (
    SELECT shopper, ts, category, sku,
           coalesce(ts - lag(ts) OVER (PARTITION BY shopper ORDER BY ts)
                    > interval '30 minutes', false) AS starts_session
    FROM events
), numbered AS (
    SELECT shopper, ts, category, sku,
           count(*) FILTER (WHERE starts_session)
               OVER (PARTITION BY shopper ORDER BY ts) AS session_no
    FROM flagged
), current_session AS (
    SELECT shopper, ts, category, sku
    FROM (SELECT *, max(session_no) OVER (PARTITION BY shopper) AS last_session_no
          FROM numbered) AS n
    WHERE session_no = last_session_no
)
SELECT shopper,
       min(ts)                                  AS session_start,
       max(ts)                                  AS last_activity,
       count(*)                                 AS events,
       mode() WITHIN GROUP (ORDER BY category)  AS dominant_category,
       (array_agg(sku ORDER BY ts DESC))[1]     AS last_item
FROM current_session
GROUP BY shopper;
