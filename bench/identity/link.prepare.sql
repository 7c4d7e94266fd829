-- bench/identity/link.prepare.sql: the same links as (namespace, value)
-- pairs for personalize.link(), and one namespace per identifier kind, each
-- without a limit (max_per_profile NULL), so that no merge rule refuses a
-- link and the identity graph must come out as the connected components.
--   psql -v link_links=1000000 -f bench/identity/link.prepare.sql
-- links_ns holds the first :link_links links of links (all of them unless
-- IDENTITY_LINK_LINKS says fewer); link_ids the identifiers they mention.
SET client_min_messages = warning;
DROP TABLE IF EXISTS links_ns, link_ids;

CREATE UNLOGGED TABLE links_ns AS
SELECT split_part(a, ':', 1) AS namespace_a, substr(a, strpos(a, ':') + 1) AS value_a,
       split_part(b, ':', 1) AS namespace_b, substr(b, strpos(b, ':') + 1) AS value_b
FROM (SELECT a, b FROM links LIMIT :link_links) AS l;

CREATE UNLOGGED TABLE link_ids AS
SELECT namespace_a || ':' || value_a AS identifier FROM links_ns
UNION
SELECT namespace_b || ':' || value_b FROM links_ns;

SELECT personalize.create_namespace(ns)
FROM (SELECT namespace_a AS ns FROM links_ns UNION SELECT namespace_b FROM links_ns) AS n
ORDER BY ns;
ANALYZE links_ns, link_ids;
