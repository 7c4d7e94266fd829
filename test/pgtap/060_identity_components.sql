-- Identity resolution, by properties over random graphs:
--   A. connected_components equals a recursive-CTE reference (self-loops,
--      duplicate and reversed edges, NULL ends, text and bigint columns);
--   B. without limits, the graph link() builds is the connected components,
--      and three different orders of the same links give the same partition
--      and the same profile ids, each profile keyed by its best identifier;
--   C. with limits, in random orders: no profile ever breaks a limit, every
--      refusal is recorded (and counted), every identifier has exactly one
--      identities row, no orphan profile or identity;
--   D. split and forget leave nothing behind (every table of the extension
--      is searched), and forget touches no one else;
--   E. privileges: no grant, personalize_reader, personalize_admin;
--   F. the backend's identity cache follows merges, splits, forgets and the
--      user's own DML made in the same session.
-- Everything runs in one transaction (READ COMMITTED, as the identity
-- writers need) and is rolled back, roles included.
--
BEGIN;
SET LOCAL search_path = personalize, public;
SELECT plan(40 + 20 + 20 + 13 + 18 + 18);

CREATE SCHEMA idtap;
-- an empty graph to start from (the rollback brings back whatever was there)
TRUNCATE namespaces, identities, profiles, merge_log, refused_links;

-- The graph's invariants, as the names of the ones broken: every
-- identifier's profile exists, every profile holds identifiers, and each
-- profile's key is its best identifier (priority, namespace name, bytes).
CREATE FUNCTION idtap.broken_invariants() RETURNS text[] LANGUAGE sql AS $$
  SELECT array_remove(ARRAY[
    CASE WHEN EXISTS (SELECT FROM identities i WHERE NOT EXISTS (SELECT FROM profiles p WHERE p.id = i.profile_id))
         THEN 'identity without profile' END,
    CASE WHEN EXISTS (SELECT FROM profiles p WHERE NOT EXISTS (SELECT FROM identities i WHERE i.profile_id = p.id))
         THEN 'profile without identities' END,
    CASE WHEN EXISTS (
           SELECT FROM profiles p
           WHERE NOT EXISTS (
             SELECT FROM (SELECT i.namespace_id, i.value FROM identities i JOIN namespaces n ON n.id = i.namespace_id
                           WHERE i.profile_id = p.id
                           ORDER BY n.priority DESC, n.name COLLATE "C", i.value COLLATE "C" LIMIT 1) best
             WHERE best.namespace_id = p.key_namespace_id AND best.value = p.key_value))
         THEN 'key is not the best identifier' END], NULL) $$;

-- ===== A. connected_components = a recursive CTE ===========================

CREATE TABLE idtap.edges (a text, b text, ai bigint, bi bigint);

-- nodes of different lengths, cases and bytes (multibyte too)
CREATE FUNCTION idtap.node_name(k bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE k % 4 WHEN 0 THEN 'n' || k WHEN 1 THEN 'N' || k WHEN 2 THEN 'é' || k
                    ELSE 'node-' || k || '-x' END $$;

CREATE FUNCTION idtap.fill_edges(seed int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  n int;
BEGIN
  TRUNCATE idtap.edges;
  PERFORM setseed(seed / 100.0);
  n := 5 + floor(random() * 56)::int;                 -- 5 to 60 nodes
  INSERT INTO idtap.edges (ai, bi)
  SELECT x, CASE WHEN r < 0.05 THEN NULL              -- a NULL end
                 WHEN r < 0.15 THEN x                 -- a self-loop
                 ELSE floor(random() * n)::int END
  FROM (SELECT CASE WHEN random() < 0.04 THEN NULL ELSE floor(random() * n)::int END AS x,
               random() AS r
        FROM generate_series(1, floor(random() * 1.5 * n)::int)) q;
  -- duplicates, and the same edges reversed
  INSERT INTO idtap.edges (ai, bi) SELECT ai, bi FROM idtap.edges WHERE random() < 0.15;
  INSERT INTO idtap.edges (ai, bi) SELECT bi, ai FROM idtap.edges WHERE random() < 0.15;
  UPDATE idtap.edges SET a = idtap.node_name(ai), b = idtap.node_name(bi),
                         ai = ai * 7 - 100, bi = bi * 7 - 100;   -- negative numbers too
END $$;

-- the reference: reachability by a recursive CTE, named by the smallest
-- member in byte order; ends read as text as the types' output functions write them
CREATE FUNCTION idtap.cc_reference(q text) RETURNS TABLE (identifier text, component text)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format($f$
    WITH RECURSIVE e AS (SELECT a::text AS x, b::text AS y FROM (%s) q(a, b)),
    nodes AS (SELECT x AS n FROM e WHERE x IS NOT NULL UNION SELECT y FROM e WHERE y IS NOT NULL),
    adj AS (SELECT x, y FROM e WHERE x IS NOT NULL AND y IS NOT NULL
            UNION SELECT y, x FROM e WHERE x IS NOT NULL AND y IS NOT NULL),
    reach(n, m) AS (SELECT n, n FROM nodes UNION SELECT r.n, adj.y FROM reach r JOIN adj ON adj.x = r.m)
    SELECT n, min(m COLLATE "C")::text FROM reach GROUP BY n $f$, q);
END $$;

-- rows in one and not the other (counting duplicates), and the row count
CREATE FUNCTION idtap.cc_check(seed int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  q text := CASE WHEN seed % 2 = 0 THEN 'SELECT a, b FROM idtap.edges' ELSE 'SELECT ai, bi FROM idtap.edges' END;
  diff bigint;
  n bigint;
BEGIN
  PERFORM idtap.fill_edges(seed);
  SELECT count(*) INTO diff FROM (
    (SELECT * FROM connected_components(q) EXCEPT ALL SELECT * FROM idtap.cc_reference(q))
    UNION ALL
    (SELECT * FROM idtap.cc_reference(q) EXCEPT ALL SELECT * FROM connected_components(q))) d;
  SELECT count(*) INTO n FROM connected_components(q);
  RETURN format('%s rows differ (of %s)', diff, n);
END $$;

SELECT matches(idtap.cc_check(s), '^0 rows differ \(of [0-9]+\)$',
               format('connected_components equals the recursive CTE (seed %s, %s columns)',
                      s, CASE WHEN s % 2 = 0 THEN 'text' ELSE 'bigint' END))
FROM generate_series(1, 40) s;

-- ===== B. link() builds the connected components, in any order =============

SELECT create_namespace('tap_a', 10), create_namespace('tap_b', 10), create_namespace('tap_c', 0) \g /dev/null

CREATE TABLE idtap.links (ord int, ns_a text, va text, ns_b text, vb text);
CREATE TABLE idtap.snap (run int, ident text, profile_id bigint);

-- random links among pool identifiers of the namespaces: self-links and
-- repeated (also reversed) links included
CREATE FUNCTION idtap.fill_links(seed int, nss text[], pool int, m int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  TRUNCATE idtap.links;
  PERFORM setseed(seed / 100.0);
  INSERT INTO idtap.links
  SELECT o, a_ns, a_v, CASE WHEN self THEN a_ns ELSE b_ns END, CASE WHEN self THEN a_v ELSE b_v END
  FROM (SELECT o, nss[1 + floor(random() * array_length(nss, 1))::int] AS a_ns,
               'v' || floor(random() * pool)::int AS a_v,
               nss[1 + floor(random() * array_length(nss, 1))::int] AS b_ns,
               'v' || floor(random() * pool)::int AS b_v,
               random() < 0.08 AS self
        FROM generate_series(1, m) o) q;
  INSERT INTO idtap.links SELECT m + ord, ns_b, vb, ns_a, va FROM idtap.links WHERE random() < 0.1;
END $$;

CREATE FUNCTION idtap.clear_graph() RETURNS void LANGUAGE sql AS $$
  TRUNCATE personalize.identities, personalize.profiles, personalize.merge_log,
           personalize.refused_links $$;

-- the links in a permuted order on an empty graph; the resulting
-- (identifier, profile id) pairs go to idtap.snap as run perm
CREATE FUNCTION idtap.run_links(perm int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  r record;
  refused int := 0;
BEGIN
  PERFORM idtap.clear_graph();
  FOR r IN SELECT * FROM idtap.links ORDER BY md5(perm || '/' || ord) LOOP
    IF NOT link(r.ns_a, r.va, r.ns_b, r.vb) THEN
      refused := refused + 1;
    END IF;
  END LOOP;
  INSERT INTO idtap.snap
  SELECT perm, n.name || ':' || i.value, i.profile_id
  FROM identities i JOIN namespaces n ON n.id = i.namespace_id;
  RETURN idtap.broken_invariants()
         || CASE WHEN refused > 0 THEN ARRAY[format('order %s: %s links refused', perm, refused)] END;
END $$;

CREATE FUNCTION idtap.order_check(seed int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  failed text[] := '{}';
  bad bigint;
BEGIN
  PERFORM idtap.fill_links(seed, ARRAY['tap_a', 'tap_b', 'tap_c'], 5 + seed * 2, 5 + seed * 4);
  TRUNCATE idtap.snap;
  failed := failed || idtap.run_links(1) || idtap.run_links(2) || idtap.run_links(3);
  CREATE TEMP TABLE cc ON COMMIT DROP AS
  SELECT * FROM connected_components('SELECT ns_a || '':'' || va, ns_b || '':'' || vb FROM idtap.links');
  -- the same identifiers
  SELECT count(*) INTO bad FROM cc FULL JOIN (SELECT * FROM idtap.snap WHERE run = 1) s ON s.ident = cc.identifier
  WHERE cc.identifier IS NULL OR s.ident IS NULL;
  IF bad > 0 THEN failed := failed || format('%s identifiers differ from the components', bad); END IF;
  -- the same partition: profile <-> component is one to one
  SELECT count(DISTINCT s.profile_id) + count(DISTINCT cc.component) - 2 * count(DISTINCT (s.profile_id, cc.component))
    INTO bad FROM cc JOIN idtap.snap s ON s.run = 1 AND s.ident = cc.identifier;
  IF bad <> 0 THEN failed := failed || 'the profiles are not the connected components'::text; END IF;
  -- other orders: the same identifiers in profiles of the same ids
  FOR r IN 2..3 LOOP
    SELECT count(*) INTO bad
    FROM (SELECT ident, profile_id FROM idtap.snap WHERE run = 1) x
         FULL JOIN (SELECT ident, profile_id FROM idtap.snap WHERE run = r) y USING (ident)
    WHERE x.profile_id IS DISTINCT FROM y.profile_id;
    IF bad > 0 THEN failed := failed || format('order %s: %s identifiers in other profiles', r, bad); END IF;
  END LOOP;
  -- not by accident: some component joins several identifiers, and merges happened
  IF NOT EXISTS (SELECT FROM cc GROUP BY component HAVING count(*) >= 3) THEN
    failed := failed || 'no component of 3 or more'::text;
  END IF;
  IF NOT EXISTS (SELECT FROM merge_log WHERE action = 'merge') THEN
    failed := failed || 'no merge in the last order'::text;
  END IF;
  DROP TABLE cc;
  RETURN failed;
END $$;
SELECT is(idtap.order_check(s), '{}',
          format('link() in 3 orders: the connected components, the same ids, keyed by the best identifier (seed %s)', s))
FROM generate_series(1, 20) s;

-- ===== C. limits: never broken, every refusal recorded ======================

TRUNCATE namespaces;
SELECT idtap.clear_graph() \g /dev/null
SELECT create_namespace('lim_cust', 100, 1), create_namespace('lim_mail', 50, 2),
       create_namespace('lim_phone', 50, 3), create_namespace('lim_dev', 0) \g /dev/null

-- a namespace's rank: the best identifier of a set sorts first
CREATE FUNCTION idtap.rank_key(ns text, v text) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT lpad((1000 - priority)::text, 5, '0') || '/' || name || '/' || v
  FROM personalize.namespaces WHERE name = ns $$;

-- ops: a link of two identifiers, or an event of one to three (of distinct namespaces)
CREATE TABLE idtap.ops (ord int, ids text[][]);   -- {{ns, value}, ...}
CREATE FUNCTION idtap.fill_ops(seed int, pool int, m int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  nss text[] := ARRAY['lim_cust', 'lim_mail', 'lim_phone', 'lim_dev', 'lim_dev'];
BEGIN
  TRUNCATE idtap.ops;
  PERFORM setseed(seed / 100.0 - 0.5);
  INSERT INTO idtap.ops
  SELECT o, array_agg(ARRAY[ns, v] ORDER BY ns)
  FROM (SELECT DISTINCT ON (o, ns) o, ns, 'v' || floor(random() * pool)::int AS v
        FROM (SELECT o, nss[1 + floor(random() * 5)::int] AS ns, g
              FROM generate_series(1, m) o,
                   LATERAL generate_series(1, CASE WHEN random() < 0.6 + o * 0 THEN 2 ELSE 3 END) g) x
        ORDER BY o, ns, g) y
  GROUP BY o;
END $$;

-- run the ops in a permuted order, checking after every op; returns the
-- names of the properties that failed
CREATE FUNCTION idtap.limit_run(perm int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  r record;
  failed text[] := '{}';
  best text[];
  other text[];
  result bigint;
  ok boolean;
  times_before jsonb;
  refusals bigint := 0;
  bad bigint;
BEGIN
  PERFORM idtap.clear_graph();
  FOR r IN SELECT * FROM idtap.ops ORDER BY md5(perm || '/' || ord) LOOP
    SELECT coalesce(jsonb_object_agg(namespace_a || ':' || value_a || '|' || namespace_b || ':' || value_b, times), '{}')
      INTO times_before FROM refused_links;
    SELECT ARRAY[r.ids[i][1], r.ids[i][2]] INTO best
    FROM generate_subscripts(r.ids, 1) i ORDER BY idtap.rank_key(r.ids[i][1], r.ids[i][2]) COLLATE "C" LIMIT 1;
    IF array_length(r.ids, 1) = 2 AND r.ord % 3 <> 0 THEN
      ok := link(r.ids[1][1], r.ids[1][2], r.ids[2][1], r.ids[2][2]);
      result := resolve(best[1], best[2]);
      IF ok <> (resolve(r.ids[1][1], r.ids[1][2]) = resolve(r.ids[2][1], r.ids[2][2])) THEN
        failed := failed || format('link %s returned %s', r.ids, ok);
      END IF;
    ELSE
      result := identify((SELECT jsonb_object_agg(r.ids[i][1], r.ids[i][2]) FROM generate_subscripts(r.ids, 1) i));
      IF result IS DISTINCT FROM resolve(best[1], best[2]) THEN
        failed := failed || format('event %s went to %s, not to its best identifier''s profile', r.ids, result);
      END IF;
    END IF;
    -- every identifier kept apart from the best one: a refusal (best, it), counted
    FOR i IN 1..array_length(r.ids, 1) LOOP
      other := ARRAY[r.ids[i][1], r.ids[i][2]];
      CONTINUE WHEN other = best OR resolve(other[1], other[2]) = result;
      refusals := refusals + 1;
      SELECT count(*) INTO bad FROM refused_links
      WHERE (namespace_a, value_a, namespace_b, value_b) = (best[1], best[2], other[1], other[2])
        AND times = coalesce((times_before ->> (best[1] || ':' || best[2] || '|' || other[1] || ':' || other[2]))::bigint, 0) + 1;
      IF bad <> 1 THEN
        failed := failed || format('%s kept apart from %s: not recorded', other, best);
      END IF;
    END LOOP;
    -- no profile ever breaks a limit
    SELECT count(*) INTO bad FROM (
      SELECT FROM identities i JOIN namespaces n ON n.id = i.namespace_id
      WHERE n.max_per_profile IS NOT NULL
      GROUP BY i.profile_id, n.id, n.max_per_profile HAVING count(*) > n.max_per_profile) x;
    IF bad > 0 THEN failed := failed || format('a limit broken after op %s', r.ord); END IF;
    EXIT WHEN cardinality(failed) > 5;
  END LOOP;
  -- nothing recorded that was not refused
  IF (SELECT coalesce(sum(times), 0) FROM refused_links) <> refusals THEN
    failed := failed || format('refused_links counts %s refusals, %s seen',
                               (SELECT sum(times) FROM refused_links), refusals);
  END IF;
  -- every identifier that appeared: exactly one identities row
  SELECT count(*) INTO bad
  FROM (SELECT DISTINCT o.ids[i][1] AS ns, o.ids[i][2] AS v FROM idtap.ops o, generate_subscripts(o.ids, 1) i) seen
       FULL JOIN (SELECT n.name AS ns, i.value AS v FROM identities i JOIN namespaces n ON n.id = i.namespace_id) stored
       USING (ns, v)
  WHERE seen.ns IS NULL OR stored.ns IS NULL;
  IF bad > 0 THEN failed := failed || format('%s identifiers seen and stored differ', bad); END IF;
  -- refusals happened (the test tests something), and links did too
  IF refusals = 0 THEN failed := failed || 'no refusal at all'::text; END IF;
  IF NOT EXISTS (SELECT FROM identities GROUP BY profile_id HAVING count(*) > 2) THEN
    failed := failed || 'no profile holds more than 2 identifiers'::text;
  END IF;
  RETURN failed || idtap.broken_invariants();
END $$;

CREATE FUNCTION idtap.limit_check(seed int) RETURNS text[] LANGUAGE plpgsql AS $$
BEGIN
  PERFORM idtap.fill_ops(seed, 8 + seed, 30 + 3 * seed);
  RETURN idtap.limit_run(1) || idtap.limit_run(2) || idtap.limit_run(3);
END $$;

SELECT is(idtap.limit_check(s), '{}',
          format('limits in 3 random orders: never broken, each refusal recorded once per pair and counted, one identities row per identifier, no orphans (seed %s)', s))
FROM generate_series(1, 20) s;

-- ===== D. split and forget leave nothing behind ============================

TRUNCATE namespaces;
SELECT idtap.clear_graph() \g /dev/null
SELECT create_namespace('d_cust', 100, 1, 'normalize_trim(text)'),
       create_namespace('d_mail', 50, 5, 'normalize_email(text)', '{test@example.com}'),
       create_namespace('d_dev', 0) \g /dev/null

-- a source table, emails as typed
CREATE TABLE idtap.events (id serial, email text, device text, note text);
INSERT INTO idtap.events (email, device, note) VALUES
  (' Xena@Forget.Example', 'xdev-1', 'x1'), ('xena@forget.example  ', NULL, 'x2'), (NULL, 'xdev-2', 'x3'),
  ('XENA@FORGET.EXAMPLE', 'ydev-1', 'x4'), ('yan@keep.example', 'ydev-1', 'y1'), (NULL, 'ydev-2', 'y2');

-- Xena: anonymous, then her email (a merge), the email split off again (it
-- was the key: a re-key), then login (merges), a second device (a merge),
-- split off and linked again; a blocked email at checkout.
SELECT identify('{"d_dev": "xdev-1"}') AS x_anon \gset
SELECT identify('{"d_dev": "xdev-1", "d_mail": " Xena@Forget.Example"}') AS x_mail \gset
SELECT split('d_mail', 'xena@forget.example') AS x_mail_alone \gset
SELECT is(:x_mail_alone, :x_mail, 'split of the key identifier: it keeps its id');
SELECT is(ARRAY[resolve('d_dev', 'xdev-1')], ARRAY[:x_anon]::bigint[], 'split of the key identifier: the rest is re-keyed');
SELECT is(idtap.broken_invariants() || ARRAY(SELECT id::text FROM profiles WHERE NOT rebuild_pending),
          '{}', 'split of the key identifier: nothing orphaned, both profiles rebuild_pending');
SELECT identify('{"d_dev": "xdev-1", "d_cust": "X-100", "d_mail": "xena@forget.example"}') AS xena \gset
SELECT identify('{"d_dev": "xdev-2"}') AS x_dev2 \gset
SELECT identify('{"d_dev": "xdev-2", "d_mail": "XENA@forget.example"}') \g /dev/null
SELECT split('d_dev', 'xdev-2') \g /dev/null
SELECT is(ARRAY(SELECT value FROM identities WHERE profile_id = :xena ORDER BY value),
          ARRAY['X-100', 'xdev-1', 'xena@forget.example'], 'split of a device: the rest keeps its id');
SELECT ok(link('d_mail', 'xena@forget.example', 'd_dev', 'xdev-2'), 'linked again');
SELECT identify('{"d_cust": "X-100", "d_mail": "test@example.com"}') \g /dev/null
-- Yan: two devices; then links between the two, refused
SELECT identify('{"d_cust": "Y-1", "d_dev": "ydev-1"}') AS yan \gset
SELECT identify('{"d_dev": "ydev-2"}') \g /dev/null
SELECT identify('{"d_dev": "ydev-2", "d_cust": "Y-1"}') \g /dev/null
SELECT identify('{"d_cust": "Y-1", "d_dev": "xdev-1"}') \g /dev/null
SELECT link('d_cust', 'X-100', 'd_dev', 'ydev-1') \g /dev/null
CREATE TABLE idtap.yan_before AS
SELECT (SELECT array_agg(value ORDER BY value) FROM identities WHERE profile_id = :yan) AS identities,
       (SELECT count(*) FROM profiles WHERE id = :yan) AS profiles,
       (SELECT array_agg(value_b ORDER BY id) FROM merge_log WHERE into_profile = :yan) AS merged;
SELECT is((SELECT count(*) FROM refused_links WHERE 'xdev-1' IN (value_a, value_b) OR 'X-100' IN (value_a, value_b)),
          3::bigint, 'refusals name Xena: Yan''s login on her device, hers on his, her blocked email');

SELECT results_eq(
  $$SELECT relation, removed FROM forget('d_dev', 'xdev-2',
      ARRAY[('idtap.events', 'email', 'd_mail'), ('idtap.events', 'device', 'd_dev')]::source_column[])$$,
  $$VALUES ('personalize.identities', 4::bigint), ('personalize.profiles', 1), ('personalize.merge_log', 8),
           ('personalize.refused_links', 3), ('personalize.audience_events', 0),
           ('idtap.events.email', 3), ('idtap.events.device', 1)$$,
  'forget: per-table counts');

-- Every table of the extension (and the source table): no row holds any of
-- her identifiers, raw or normalized, nor any id her profile ever had.
CREATE FUNCTION idtap.hits(patterns text[]) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  rel regclass;
  n bigint;
  found text[] := '{}';
BEGIN
  FOR rel IN
    SELECT c.oid::regclass FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
    WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')
      AND d.classid = 'pg_class'::regclass AND c.relkind = 'r'
    UNION ALL SELECT 'idtap.events'::regclass
  LOOP
    EXECUTE format('SELECT count(*) FROM %s t WHERE row_to_json(t)::text ILIKE ANY ($1)', rel)
      INTO n USING patterns;
    IF n > 0 THEN found := found || format('%s: %s rows', rel, n); END IF;
  END LOOP;
  RETURN found;
END $$;
SELECT is((SELECT count(*) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
           WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')
             AND c.relkind = 'r' AND c.relname IN ('identities', 'profiles', 'merge_log', 'refused_links', 'namespaces')),
          5::bigint, 'the search covers the identity tables');
SELECT is(idtap.hits(ARRAY['%xdev-1%', '%xdev-2%', '%X-100%', '%xena@forget.example%',
                           '%' || :x_anon || '%', '%' || :x_mail || '%', '%' || :xena || '%', '%' || :x_dev2 || '%']),
          '{}', 'forget: no table holds her identifiers or her profile ids');
SELECT is(ARRAY(SELECT note FROM idtap.events ORDER BY id), ARRAY['y1', 'y2'], 'forget: her source rows went, his stayed');
SELECT is((SELECT ROW(y.*)::text FROM idtap.yan_before y),
          (SELECT ROW((SELECT array_agg(value ORDER BY value) FROM identities WHERE profile_id = :yan),
                      (SELECT count(*) FROM profiles WHERE id = :yan),
                      (SELECT array_agg(value_b ORDER BY id) FROM merge_log WHERE into_profile = :yan))::text),
          'forget: Yan''s identities, profile and merges are untouched');
SELECT is(idtap.broken_invariants(), '{}', 'forget: nothing orphaned');

-- A device split off one customer and then linked to another: forgetting
-- the first must not erase the second's merge log.
SELECT identify('{"d_dev": "shared"}') \g /dev/null
SELECT identify('{"d_dev": "shared", "d_cust": "A-1"}') \g /dev/null
SELECT split('d_dev', 'shared') \g /dev/null
SELECT identify('{"d_dev": "shared", "d_cust": "B-1"}') AS b1 \gset
SELECT count(*) FROM forget('d_cust', 'A-1') \g /dev/null
SELECT is(ARRAY(SELECT value_a || '+' || value_b FROM merge_log WHERE into_profile = :b1),
          ARRAY['B-1+shared'], 'forget of A-1 keeps B-1''s merge with the device split off A-1');

-- ===== E. privileges =======================================================

TRUNCATE namespaces;
SELECT idtap.clear_graph() \g /dev/null
SELECT create_namespace('e_dev', 0), create_namespace('e_cust', 100, 1) \g /dev/null
SELECT identify('e_dev', 'known') AS known \gset
SELECT identify('e_dev', 'other') AS other \gset
CREATE ROLE idtap_nobody;
CREATE ROLE idtap_reader IN ROLE personalize_reader;
CREATE ROLE idtap_admin IN ROLE personalize_admin;

-- The roles as documented ("grant personalize_reader or personalize_admin").
SET LOCAL ROLE idtap_reader;
SELECT lives_ok($$SELECT personalize.resolve('e_dev', 'known')$$, 'personalize_reader alone can resolve');
RESET ROLE;
SET LOCAL ROLE idtap_admin;
SELECT lives_ok($$SELECT personalize.identify('e_dev', 'admin-alone')$$, 'personalize_admin alone can identify');
RESET ROLE;

-- The table grants (the schema itself is usable by PUBLIC).
SELECT resolve('e_dev', 'known') \g /dev/null
-- (now cached in this backend: the privilege check must not be skipped)
SET LOCAL ROLE idtap_nobody;
SELECT throws_ok(format('SELECT * FROM personalize.%I', t), '42501', format('permission denied for table %s', t),
                 format('without grants: no SELECT on %s', t))
FROM unnest(ARRAY['identities', 'profiles', 'merge_log', 'refused_links', 'namespaces']) t;
SELECT throws_ok($$SELECT personalize.resolve('e_dev', 'known')$$, '42501', 'permission denied for table identities',
                 'without grants: resolve() is refused, even for a cached identifier');
SELECT throws_ok($$SELECT personalize.identify('e_dev', 'new')$$, '42501', NULL, 'without grants: identify() is refused');
RESET ROLE;
SET LOCAL ROLE idtap_reader;
SELECT is(resolve('e_dev', 'known'), :known, 'personalize_reader: resolve()');
SELECT is(ARRAY(SELECT value FROM identifiers(:known)), ARRAY['known'], 'personalize_reader: identifiers()');
SELECT throws_ok($$SELECT personalize.link('e_dev', 'known', 'e_dev', 'other')$$, '42501', NULL,
                 'personalize_reader: link() is refused');
-- the direct heap writes check SELECT and INSERT, each on its own
SELECT throws_ok($$SELECT personalize.identify('e_dev', 'new')$$, '42501', NULL,
                 'personalize_reader: identify() is refused');
SELECT throws_ok($$SELECT personalize.link('e_dev', 'known', 'e_dev', 'new-too')$$, '42501', NULL,
                 'personalize_reader: link() of a new identifier is refused');
RESET ROLE;
SET LOCAL ROLE idtap_admin;
SELECT ok(link('e_dev', 'known', 'e_dev', 'other'), 'personalize_admin: link() merges two profiles');
SELECT ok(NOT link('e_cust', '1', 'e_cust', '2'), 'personalize_admin: a refused link is recorded');
SELECT lives_ok($$SELECT personalize.split('e_dev', 'other')$$, 'personalize_admin: split()');
RESET ROLE;
SELECT is(ARRAY[(SELECT count(*) FROM merge_log), (SELECT count(*) FROM refused_links)], ARRAY[2, 1]::bigint[],
          'what personalize_admin did is logged');
REVOKE USAGE ON SCHEMA personalize FROM idtap_nobody, idtap_reader, idtap_admin;
DROP ROLE idtap_nobody, idtap_reader, idtap_admin;

-- ===== F. the identity cache follows this session's changes =================

SELECT ok(current_setting('shared_preload_libraries') ~ 'personalize'
          AND current_setting('personalize.identity_cache_size')::int > 0, 'the identity cache is on');
TRUNCATE namespaces;
SELECT idtap.clear_graph() \g /dev/null
SELECT create_namespace('f_cust', 100, 1), create_namespace('f_dev', 0) \g /dev/null
SELECT identify('f_dev', 'd1') AS d1 \gset
SELECT resolve('f_dev', 'd1') \g /dev/null
SELECT identify('{"f_dev": "d1", "f_cust": "c1"}') AS c1 \gset
SELECT is(resolve('f_dev', 'd1'), :c1, 'after a merge: the new profile');
SELECT is(split('f_dev', 'd1'), :d1, 'split');
SELECT is(resolve('f_dev', 'd1'), :d1, 'after a split: its own profile');
SELECT link('f_dev', 'd1', 'f_cust', 'c1') \g /dev/null
SELECT resolve('f_dev', 'd1') \g /dev/null
UPDATE identities SET profile_id = 4242 WHERE value = 'd1';
SELECT is(resolve('f_dev', 'd1'), 4242::bigint, 'after the user''s UPDATE: the updated row');
SAVEPOINT s;
UPDATE identities SET profile_id = 4343 WHERE value = 'd1';
SELECT resolve('f_dev', 'd1') \g /dev/null
ROLLBACK TO SAVEPOINT s;
SELECT is(resolve('f_dev', 'd1'), 4242::bigint, 'after a rolled back UPDATE: the row as it is');
DELETE FROM identities WHERE value = 'd1';
SELECT is(resolve('f_dev', 'd1'), NULL, 'after the user''s DELETE: unknown');
SELECT identify('f_dev', 'd2') AS d2 \gset
TRUNCATE identities;
SELECT is(resolve('f_dev', 'd2'), NULL, 'after the user''s TRUNCATE: unknown');
-- Random links and splits with caches of many sizes (the cache keeps two
-- generations of half the size each): after every step, resolve() agrees
-- with personalize.identities for every identifier.
CREATE FUNCTION idtap.cache_run(size int, seed int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  r record;
  bad bigint := 0;
  n bigint;
BEGIN
  PERFORM set_config('personalize.identity_cache_size', size::text, true);
  PERFORM set_config('client_min_messages', 'warning', true);   -- splits of lone identifiers
  PERFORM idtap.clear_graph();
  PERFORM idtap.fill_links(seed, ARRAY['f_cust', 'f_dev'], 12, 80);
  FOR r IN SELECT * FROM idtap.links ORDER BY ord LOOP
    PERFORM link(r.ns_a, r.va, r.ns_b, r.vb);
    -- (keys included: a key's split re-keys the rest)
    IF r.ord % 7 = 0 THEN
      PERFORM split(r.ns_b, r.vb);
    END IF;
    SELECT count(*) INTO n FROM identities i JOIN namespaces ns ON ns.id = i.namespace_id
    WHERE resolve(ns.name, i.value) IS DISTINCT FROM i.profile_id;
    bad := bad + n;
  END LOOP;
  PERFORM set_config('client_min_messages', 'notice', true);
  RETURN bad;
END $$;
SELECT is(idtap.cache_run(size, i::int), 0::bigint,
          format('identity cache of %s entries: resolve() always agrees with the table', size))
FROM unnest(ARRAY[1, 2, 3, 5, 8, 100000]) WITH ORDINALITY AS x(size, i);
RESET personalize.identity_cache_size;
-- Splitting a key identifier whose key is not cached: the key is read with
-- its own query, which must not disturb the list of the profile's
-- identifiers (it once did, and crashed the backend).
SET LOCAL personalize.identity_cache_size = 0;
SELECT idtap.clear_graph() \g /dev/null
SELECT link('f_cust', 'k1', 'f_dev', 'k1d') \g /dev/null
SELECT split('f_cust', 'k1') AS k1 \gset
SELECT ok(:k1 <> resolve('f_dev', 'k1d')
          AND (SELECT key_value FROM profiles WHERE id = resolve('f_dev', 'k1d')) = 'k1d',
          'split of an uncached key identifier: the rest is re-keyed by its best identifier');
RESET personalize.identity_cache_size;

SELECT idtap.clear_graph() \g /dev/null
SELECT identify('{"f_dev": "d3", "f_cust": "c3"}') AS c3 \gset
SELECT resolve('f_dev', 'd3') \g /dev/null
SELECT count(*) FROM forget('f_cust', 'c3') \g /dev/null
SELECT is(resolve('f_dev', 'd3'), NULL, 'after forget: unknown');
SELECT identify('f_dev', 'd3') AS d3 \gset
SELECT is(:d3 IN (SELECT id FROM profiles), true, 'after forget: identify() creates a profile');
-- the same without the cache
SET LOCAL personalize.identity_cache_size = 0;
SELECT idtap.clear_graph() \g /dev/null
SELECT identify('{"f_dev": "d4", "f_cust": "c4"}') \g /dev/null
SELECT resolve('f_dev', 'd4') \g /dev/null
SELECT count(*) FROM forget('f_cust', 'c4') \g /dev/null
SELECT is(resolve('f_dev', 'd4'), NULL, 'after forget, without the identity cache: unknown');

SELECT * FROM finish();
ROLLBACK;
