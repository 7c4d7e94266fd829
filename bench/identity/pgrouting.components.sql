-- bench/identity/pgrouting.components.sql: pgRouting's connected components
-- (Boost Graph Library) over the numbered edges of pgrouting.map.sql.
-- Leaves pgr_raw(component, node): both vertex ids.
SET client_min_messages = warning;
DROP TABLE IF EXISTS pgr_raw;

CREATE UNLOGGED TABLE pgr_raw AS
SELECT component, node
FROM pgr_connectedComponents('SELECT id, source, target, 1 AS cost FROM pgr_edges');
