-- bench/identity/recursive_cte.sql: connected components with one recursive
-- CTE, as found in warehouse code: the transitive closure of the link
-- relation (every pair of identifiers that reach each other), then the
-- smallest reachable identifier per identifier.  UNION (not UNION ALL) is what
-- makes it terminate on cycles; it also keeps every pair ever found in one
-- hash table, so time and memory grow with the sum over components of
-- size^2, not with the number of links.
--
--   psql -v edges=cte_links -f bench/identity/recursive_cte.sql
-- Reads :edges(a, b); leaves cte_result(identifier, component).
SET client_min_messages = warning;
DROP TABLE IF EXISTS cte_result;

CREATE UNLOGGED TABLE cte_result AS
WITH RECURSIVE e(src, dst) AS (
    SELECT a, b FROM :edges
    UNION ALL
    SELECT b, a FROM :edges
), reach(id, other) AS (
    SELECT src, src FROM e
    UNION
    SELECT r.id, e.dst FROM reach AS r JOIN e ON e.src = r.other
)
SELECT id AS identifier, min(other COLLATE "C") AS component
FROM reach
GROUP BY id;
