-- bench/identity/sample.sql: a sample of the graph small enough for the
-- recursive CTE: whole components (so the sample's answer is the full
-- graph's answer restricted to it), taken in a fixed pseudo-random order
-- until :sample links.  Components come from the generator (gen_ids.c).
-- Leaves cte_links(a, b) and cte_ids(identifier).
--   psql -v sample=10000 -f bench/identity/sample.sql
SET client_min_messages = warning;
DROP TABLE IF EXISTS cte_links, cte_ids;

CREATE UNLOGGED TABLE cte_links AS
WITH per_component AS (
    SELECT g.c, count(*) AS n
    FROM links AS l JOIN gen_ids AS g ON g.id = l.a
    GROUP BY g.c
), chosen AS (
    SELECT c
    FROM (SELECT c, sum(n) OVER (ORDER BY hashint4(c), c) AS cumulative FROM per_component) AS p
    WHERE cumulative <= :sample
)
SELECT l.a, l.b
FROM links AS l JOIN gen_ids AS g ON g.id = l.a
WHERE g.c IN (SELECT c FROM chosen);

CREATE UNLOGGED TABLE cte_ids AS
SELECT a AS identifier FROM cte_links UNION SELECT b FROM cte_links;
