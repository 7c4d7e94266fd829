-- bench/identity/ours.sql: personalize's batch connected components.
-- Reads links(a, b); leaves ours_result(identifier, component), component
-- the smallest identifier of the component in byte order.
SET client_min_messages = warning;
DROP TABLE IF EXISTS ours_result;

CREATE UNLOGGED TABLE ours_result AS
SELECT identifier, component
FROM personalize.connected_components('SELECT a, b FROM links');
