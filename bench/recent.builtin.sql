-- Built-in: the 10 latest views.  NOT the same answer: a SKU viewed twice in a
-- row appears twice, where recent_agg keeps distinct SKUs (see
-- recent.builtin-distinct.sql for the equivalent).  PostgreSQL 15 cannot
-- partially aggregate an ORDER BY aggregate, so this gets no Partial Aggregate.
SELECT shopper, (array_agg(sku ORDER BY ts DESC))[1:10] AS recent_skus
FROM events
GROUP BY shopper;
