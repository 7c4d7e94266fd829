-- bench/identity/check.sql: is one method's answer the reference answer?
--   psql -v res=pgr_result -v name=pgrouting -v ids=all_ids -v ref=lp_result \
--        -v labelled=yes -f bench/identity/check.sql
--
-- :res(identifier, component) is one method's answer; :ids(identifier) the
-- identifiers it was asked about (all_ids, or a sample's).  The reference
-- :ref(identifier, component) is lp_result, the label propagation's answer,
-- itself checked against the components the generator built; it may hold
-- more identifiers than :ids (a sample of whole components).  Checked:
--   every identifier of :ids exactly once, and nothing else;
--   the same partition as the reference: each method's groups are relabelled
--     with their smallest identifier, then compared identifier by identifier;
--   the same number of components;
--   with :labelled = yes, the method's own component label is the smallest
--     identifier of its component in byte order (what connected_components
--     promises; pgrouting's is too, through the byte-order numbering of
--     pgrouting.map.sql; the identity graph labels with profile ids).
-- One row per check: check | verdict (ok or FAIL) | detail.
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;

WITH r AS (
    SELECT identifier, component,
           min(identifier COLLATE "C") OVER (PARTITION BY component) AS canonical
    FROM :res
), ref AS (
    SELECT l.identifier, l.component FROM :ref AS l JOIN :ids AS i USING (identifier)
), counts AS (
    SELECT (SELECT count(*) FROM :ids) AS expected,
           (SELECT count(*) FROM r) AS rows,
           (SELECT count(DISTINCT identifier) FROM r) AS distinct_ids,
           (SELECT count(*) FROM r WHERE identifier NOT IN (SELECT identifier FROM :ids)) AS foreign_ids,
           (SELECT count(DISTINCT component) FROM r) AS components,
           (SELECT count(DISTINCT component) FROM ref) AS ref_components,
           (SELECT count(*) FROM r FULL JOIN ref USING (identifier)
            WHERE r.canonical IS DISTINCT FROM ref.component) AS differ,
           (SELECT count(*) FROM r WHERE component IS DISTINCT FROM canonical) AS not_smallest
)
SELECT :'name' || ': every identifier exactly once',
       CASE WHEN rows = expected AND distinct_ids = expected AND foreign_ids = 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s rows, %s distinct identifiers, %s not in the input; %s expected',
              rows, distinct_ids, foreign_ids, expected)
FROM counts
UNION ALL
SELECT :'name' || ': same partition as the reference',
       CASE WHEN differ = 0 AND rows > 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s identifiers in a different component', differ, expected)
FROM counts
UNION ALL
SELECT :'name' || ': same number of components',
       CASE WHEN components = ref_components THEN 'ok' ELSE 'FAIL' END,
       format('%s components, reference %s', components, ref_components)
FROM counts
UNION ALL
SELECT :'name' || ': component = smallest identifier (byte order)',
       CASE WHEN not_smallest = 0 THEN 'ok' ELSE 'FAIL' END,
       format('%s of %s identifiers labelled otherwise', not_smallest, rows)
FROM counts
WHERE :'labelled' = 'yes';
