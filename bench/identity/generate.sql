-- bench/identity/generate.sql: the identity edge set the benchmark resolves.
--   psql -v links=1000000 -f bench/identity/generate.sql
--
-- links(a text, b text): exactly :links links among about 0.6 * :links
-- identifiers in 0.2 * :links connected components (1 M links: ~600 k
-- identifiers, 200 000 components).  Identifiers look like the ones shops
-- stitch: 'anon:<uuid>' (cookies, devices), 'email:anna123@x.com',
-- 'customer:10000123', 'phone:+12000000123'.
--
-- The graph is built component by component, so the answer is known by
-- construction (gen_ids.c) and the sizes can be skewed on purpose:
--   shoppers  all but :hubs components: a Pareto size, floor(2 * u^(-1/2.5)),
--             at least 2, at most 1000: half the components are pairs
--             (a cookie and an email), mean ~2.9, the largest a few hundred.
--             Edges: a random recursive tree (member j links to a random
--             earlier member), as a shopper's devices and logins accrue.
--   hubs      :hubs = links / 50 000 components around a shared device (a
--             store kiosk, a family tablet, a call-centre phone): the k-th
--             has links / 200 / k members (1 M links: 5 000, 2 500, ... 250),
--             linked mostly to the device itself (parent = floor(j * u^4)),
--             so they are wide and shallow.
-- The links beyond the spanning trees (~60 %) are what real event streams
-- carry: half repeat a tree link (the same cookie and email seen on many
-- events), half join two random members of one component (a cycle: the
-- shopper's phone seen with their second cookie).  Each link's direction is
-- random, and rows are stored in random order.
--
-- setseed() and serial plans make the table reproducible, row for row.  (The
-- helper tables are not ANALYZEd: the plans, and with them the order in which
-- random() is called, then depend on nothing but the table sizes.)
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;
SET work_mem = '512MB';
SELECT setseed(0.6180339887);

\set comps '(:links / 5)'
SELECT greatest(1, :links / 50000) AS hubs \gset

DROP TABLE IF EXISTS gen_comps, gen_ids, gen_tree, links;

-- One row per component: its size.  Hubs are components 1 .. :hubs.
CREATE UNLOGGED TABLE gen_comps AS
SELECT c,
       c <= :hubs AS hub,
       CASE WHEN c <= :hubs THEN greatest(2, :links / 200 / c)
            ELSE least(1000, floor(2 * (1 - random()) ^ (-1 / 2.5)))::int
       END AS size
FROM generate_series(1, :comps) AS c;

-- One row per identifier: component c, member j (0 .. size - 1), the
-- global number g (1 .. n, in component order, for picking one uniformly),
-- and its text.  Member 0 is the first cookie (a hub's shared device).  The
-- number n inside the text is a random permutation, so the smallest
-- identifier of a component is no particular member.
CREATE UNLOGGED TABLE gen_ids AS
WITH m AS (
    SELECT c, hub, size, j,
           CASE WHEN j = 0 THEN 'anon'
                WHEN hub THEN (ARRAY['email', 'email', 'email', 'anon', 'customer'])[1 + floor(5 * random())::int]
                ELSE (ARRAY['anon', 'anon', 'anon', 'email', 'email', 'email',
                            'customer', 'customer', 'phone', 'phone'])[1 + floor(10 * random())::int]
           END AS kind
    FROM gen_comps, generate_series(0, size - 1) AS j
), numbered AS (
    SELECT m.*, row_number() OVER (ORDER BY c, j) AS g, row_number() OVER (ORDER BY random()) AS n
    FROM m
)
SELECT c, j, g, size, hub,
       CASE kind
           WHEN 'anon' THEN 'anon:' || md5('anon' || n)::uuid
           WHEN 'email' THEN 'email:'
                || (ARRAY['anna', 'ben', 'chloe', 'david', 'emma', 'felix', 'grace', 'hugo',
                          'ines', 'jonas', 'kim', 'luca', 'mia', 'noah', 'olga', 'paul'])[1 + n % 16]
                || n || '@'
                || (ARRAY['gmail.com', 'x.com', 'yahoo.com', 'outlook.com', 'web.de', 'icloud.com'])[1 + n / 16 % 6]
           WHEN 'customer' THEN 'customer:' || (10000000 + n)
           ELSE 'phone:+' || (ARRAY['1', '44', '49', '33'])[1 + n % 4] || (2000000000 + n)
       END AS id
FROM numbered;
CREATE UNIQUE INDEX ON gen_ids (c, j);
CREATE UNIQUE INDEX ON gen_ids (g);

-- The spanning tree of every component: member j >= 1 links to an earlier
-- member (hubs: nearly always the device).
CREATE UNLOGGED TABLE gen_tree AS
SELECT row_number() OVER (ORDER BY t.c, t.j) AS e, t.c, t.j, p.j AS pj
FROM (SELECT c, j, floor(j * random() ^ CASE WHEN hub THEN 4 ELSE 1 END)::int AS pj
      FROM gen_ids WHERE j > 0) AS t
JOIN gen_ids AS p ON p.c = t.c AND p.j = t.pj;
CREATE UNIQUE INDEX ON gen_tree (e);

SELECT count(*) AS tree_links FROM gen_tree \gset
SELECT count(*) AS n_ids FROM gen_ids \gset
SELECT greatest(0, :links - :tree_links) AS extra \gset

CREATE UNLOGGED TABLE links (a text NOT NULL, b text NOT NULL);

-- Every link as (c, j1, j2): the tree, repeats of tree links, random pairs
-- inside a component of a uniformly picked identifier.
INSERT INTO links (a, b)
SELECT CASE WHEN swap THEN y.id ELSE x.id END,
       CASE WHEN swap THEN x.id ELSE y.id END
FROM (
    SELECT c, j AS j1, pj AS j2, random() < 0.5 AS swap FROM gen_tree
    UNION ALL
    SELECT t.c, t.j, t.pj, r.swap
    FROM (SELECT 1 + floor(random() * :tree_links)::bigint AS e, random() < 0.5 AS swap
          FROM generate_series(1, :extra / 2)) AS r
    JOIN gen_tree AS t USING (e)
    UNION ALL
    -- the other member: one of the size - 1 others, uniformly
    SELECT i.c, i.j, (i.j + 1 + floor(r.u * (i.size - 1))::int) % i.size, r.swap
    FROM (SELECT 1 + floor(random() * :n_ids)::bigint AS g, random() AS u, random() < 0.5 AS swap
          FROM generate_series(1, :extra - :extra / 2)) AS r
    JOIN gen_ids AS i USING (g)
) AS l
JOIN gen_ids AS x ON x.c = l.c AND x.j = l.j1
JOIN gen_ids AS y ON y.c = l.c AND y.j = l.j2
ORDER BY random();

ANALYZE links;
