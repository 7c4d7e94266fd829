-- bench/sizes.sql: what a profile costs.  One row per shopper with one state
-- of each kind, as a profile table would hold them; sizes are pg_column_size
-- of the stored values (so TOAST compression counts where PostgreSQL applies
-- it: to rows over 2 kB).  One row per state: state | median | p90 | max.
DROP TABLE IF EXISTS public.profiles;
CREATE TABLE public.profiles AS
SELECT shopper,
       count(*)                            AS events,
       recent_agg(sku, ts, 10)             AS recent,
       top_agg(category, ts, 10, '7 days') AS top,
       windowed_agg(ts)                    AS windowed,
       distinct_agg(product_id)            AS distinct_products,
       first_agg(sku, ts)                  AS first_sku,
       last_agg(sku, ts)                   AS last_sku,
       session_agg(ts, category, sku)      AS session
FROM events
GROUP BY shopper;

SELECT state,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY bytes) AS median,
       percentile_disc(0.9) WITHIN GROUP (ORDER BY bytes) AS p90,
       max(bytes) AS max
FROM public.profiles,
     LATERAL (VALUES
         (1, 'recent_state   recent_agg(sku, ts, 10)',              pg_column_size(recent)),
         (2, 'top_state      top_agg(category, ts, 10, ''7 days'')', pg_column_size(top)),
         (3, 'windowed_state windowed_agg(ts)',                     pg_column_size(windowed)),
         (4, 'distinct_state distinct_agg(product_id)',             pg_column_size(distinct_products)),
         (5, 'first_state    first_agg(sku, ts)',                   pg_column_size(first_sku)),
         (6, 'last_state     last_agg(sku, ts)',                    pg_column_size(last_sku)),
         (7, 'session_state  session_agg(ts, category, sku)',       pg_column_size(session)),
         (8, 'one profile: all seven states',
             pg_column_size(recent) + pg_column_size(top) + pg_column_size(windowed)
             + pg_column_size(distinct_products) + pg_column_size(first_sku)
             + pg_column_size(last_sku) + pg_column_size(session)),
         (9, '(events per shopper)',                                events::int)
     ) AS s(ord, state, bytes)
GROUP BY ord, state
ORDER BY ord;
