-- Built-in: sum the decayed weights per (shopper, category), keep the 10
-- heaviest.  Weights are taken relative to :at rather than each shopper's
-- latest event: that scales a shopper's weights alike, so the ranking is the
-- same, and it spares the user a join to max(ts).  date_part() is float8;
-- extract() would return numeric (PostgreSQL 14+) and be slower.
WITH weights AS (
    SELECT shopper, category,
           sum(power(2, date_part('epoch', ts - :at) / (7 * 86400))) AS weight
    FROM events
    GROUP BY shopper, category
), ranked AS (
    SELECT shopper, category, weight,
           row_number() OVER (PARTITION BY shopper ORDER BY weight DESC, category) AS rank
    FROM weights
)
SELECT shopper, array_agg(category ORDER BY rank) AS top_categories
FROM ranked
WHERE rank <= 10
GROUP BY shopper;
