-- bench/identity/label_propagation.sql: connected components the warehouse
-- way, in plain SQL: every identifier starts labelled with itself; each round
-- lowers every label to the smallest label among its neighbours, until a
-- round changes nothing.  Labels travel one hop per round, so the number of
-- rounds is the largest distance from a component's smallest identifier to
-- any of its members, plus one.
--
-- Reads links(a, b); leaves lp_result(identifier, component), component the
-- smallest identifier of the component in byte order, and lp_rounds(rounds).
SET client_min_messages = warning;
DROP TABLE IF EXISTS lp_edges, lp_labels, lp_result, lp_rounds;

-- Both directions, each pair once.
CREATE UNLOGGED TABLE lp_edges AS
SELECT a AS src, b AS dst FROM links
UNION
SELECT b, a FROM links;

CREATE UNLOGGED TABLE lp_labels AS
SELECT DISTINCT src AS id, src AS label FROM lp_edges;
ALTER TABLE lp_labels ADD PRIMARY KEY (id);
ANALYZE lp_edges, lp_labels;

CREATE UNLOGGED TABLE lp_rounds (rounds integer);

DO $$
DECLARE
    changed bigint;
    rounds integer := 0;
BEGIN
    LOOP
        rounds := rounds + 1;
        UPDATE lp_labels AS l
        SET label = m.label
        FROM (SELECT e.dst AS id, min(s.label COLLATE "C") AS label
              FROM lp_edges AS e
              JOIN lp_labels AS s ON s.id = e.src
              GROUP BY e.dst) AS m
        WHERE l.id = m.id AND m.label < l.label COLLATE "C";
        GET DIAGNOSTICS changed = ROW_COUNT;
        EXIT WHEN changed = 0;
    END LOOP;
    INSERT INTO lp_rounds VALUES (rounds);
END
$$;

CREATE UNLOGGED TABLE lp_result AS
SELECT id AS identifier, label AS component FROM lp_labels;
