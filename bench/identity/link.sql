-- bench/identity/link.sql: every link of links_ns through personalize.link(),
-- one call per row, in one statement.  link_count records how many links
-- joined their identifiers (all of them, with no limits on the namespaces).
SET client_min_messages = warning;
DROP TABLE IF EXISTS link_count;

CREATE UNLOGGED TABLE link_count AS
SELECT count(*) FILTER (WHERE personalize.link(namespace_a, value_a, namespace_b, value_b)) AS linked,
       count(*) AS links
FROM links_ns;
