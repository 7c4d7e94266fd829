-- bench/identity/pgrouting.map.sql: pgr_connectedComponents takes bigint
-- vertex ids, so number the identifiers first.  Numbering them in byte order
-- makes pgrouting's component id (the smallest vertex id of the component)
-- the number of the smallest identifier, so mapping back is one join.
-- Reads links(a, b); leaves pgr_vertices(vid, id) and pgr_edges(id, source, target).
SET client_min_messages = warning;
DROP TABLE IF EXISTS pgr_vertices, pgr_edges;

CREATE UNLOGGED TABLE pgr_vertices AS
SELECT row_number() OVER (ORDER BY id COLLATE "C") AS vid, id
FROM (SELECT a AS id FROM links UNION SELECT b FROM links) AS v;

CREATE UNLOGGED TABLE pgr_edges AS
SELECT row_number() OVER () AS id, va.vid AS source, vb.vid AS target
FROM links
JOIN pgr_vertices AS va ON va.id = links.a
JOIN pgr_vertices AS vb ON vb.id = links.b;
