-- bench/identity/truth.sql: the components as the generator built them
-- (gen_ids.c), as gen_result(identifier, component), component the
-- smallest identifier of the component, and every identifier
-- of the links as all_ids(identifier).  bench/identity/run checks the label
-- propagation, the reference of every other check, against gen_result.
SET client_min_messages = warning;
DROP TABLE IF EXISTS gen_result, all_ids;

CREATE UNLOGGED TABLE gen_result AS
SELECT id AS identifier, min(id COLLATE "C") OVER (PARTITION BY c) AS component FROM gen_ids;

CREATE UNLOGGED TABLE all_ids AS
SELECT a AS identifier FROM links UNION SELECT b FROM links;
ANALYZE gen_result, all_ids;
