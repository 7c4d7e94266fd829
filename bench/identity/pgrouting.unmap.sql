-- bench/identity/pgrouting.unmap.sql: back from vertex ids to identifiers.
-- Leaves pgr_result(identifier, component).
SET client_min_messages = warning;
DROP TABLE IF EXISTS pgr_result;

CREATE UNLOGGED TABLE pgr_result AS
SELECT v.id AS identifier, c.id AS component
FROM pgr_raw AS r
JOIN pgr_vertices AS v ON v.vid = r.node
JOIN pgr_vertices AS c ON c.vid = r.component;
