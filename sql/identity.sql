-- Identity resolution (SPEC §1): namespaces, linking under the merge rules,
-- deterministic profile ids, split, forget, connected components.
--
-- Profile ids are 63-bit hashes of a profile's key identifier, so they are
-- stable and printed where useful; mostly this file shows relationships
-- instead: which profile each identifier resolves to, named by the profile's
-- key identifier through idt.who().
SET search_path = personalize, public;
\pset null '(null)'
CREATE SCHEMA idt;

-- ===== namespace configuration =============================================

-- Names are plain names: never quoted into SQL, so never spliced either.
SELECT create_namespace('x"; DROP TABLE y; --');
SELECT create_namespace('Email');
SELECT create_namespace('');
SELECT create_namespace('1st');
SELECT create_namespace('_id');
SELECT create_namespace('with space');
SELECT create_namespace(repeat('n', 64));
SELECT create_namespace(NULL);
-- priority must be given, a limit must be positive (NULL: no limit)
SELECT create_namespace('bad', NULL);
SELECT create_namespace('bad', 0, 0);
SELECT create_namespace('bad', 0, -1);
-- a normalizer takes one text, returns text, and is IMMUTABLE
CREATE FUNCTION idt.stable_norm(text) RETURNS text STABLE LANGUAGE sql AS 'SELECT lower($1)';
CREATE FUNCTION idt.volatile_norm(text) RETURNS text VOLATILE LANGUAGE sql AS 'SELECT lower($1)';
CREATE FUNCTION idt.set_norm(text) RETURNS SETOF text IMMUTABLE LANGUAGE sql AS 'SELECT lower($1)';
CREATE FUNCTION idt.int_norm(text) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT length($1)';
CREATE FUNCTION idt.phone44(text) RETURNS text IMMUTABLE LANGUAGE sql
    RETURN personalize.normalize_phone($1, '44');
SELECT create_namespace('bad', 0, NULL, 'normalize_phone(text,text)');
SELECT create_namespace('bad', 0, NULL, 'now()');
SELECT create_namespace('bad', 0, NULL, 'idt.int_norm(text)');
SELECT create_namespace('bad', 0, NULL, 'idt.set_norm(text)');
SELECT create_namespace('bad', 0, NULL, 'idt.stable_norm(text)');
SELECT create_namespace('bad', 0, NULL, 'idt.volatile_norm(text)');
-- none of the refused ones exists
SELECT count(*) AS namespaces FROM namespaces;

-- The shop's namespaces.  Blocked values are stored normalized (and
-- deduplicated); a blocked value the normalizer rejects is dropped, since it
-- could never link anyway.
SELECT create_namespace('customer_id', priority => 100, max_per_profile => 1,
                        normalizer => 'normalize_trim(text)');
SELECT create_namespace('email', 50, 5, 'normalize_email(text)',
                        ARRAY[' TEST@Example.com', 'test@example.com', 'not an address', NULL]);
SELECT create_namespace('phone', 60, 2, 'idt.phone44(text)');
SELECT create_namespace('loyalty_no', 60);
SELECT create_namespace('anonymous_id', 0, NULL, 'normalize_trim(text)', '{0, unknown}');
SELECT create_namespace(repeat('n', 63));   -- the longest name
SELECT create_namespace('email');
SELECT name, priority, max_per_profile, normalizer, blocked FROM namespaces ORDER BY id;

-- alter_namespace: NULL leaves a setting unchanged
SELECT alter_namespace('loyalty_no', max_per_profile => 3);
SELECT alter_namespace('loyalty_no', priority => 70);
SELECT alter_namespace('loyalty_no', remove_limit => true);
SELECT name, priority, max_per_profile FROM namespaces WHERE name = 'loyalty_no';
SELECT alter_namespace('loyalty_no', priority => 60, max_per_profile => 0);
SELECT alter_namespace('loyalty_no', max_per_profile => 2, remove_limit => true);
SELECT alter_namespace('nope', 1);
SELECT alter_namespace(NULL, 1);

-- block_value / unblock_value normalize first; true when they changed something
SELECT block_value('email', ' Bot@Shop.Example ') AS blocked;
SELECT block_value('email', 'bot@shop.example') AS blocked_again;
SELECT block_value('email', 'no address') AS unusable;
SELECT block_value('email', NULL);
SELECT block_value('nope', 'x');
SELECT blocked FROM namespaces WHERE name = 'email';
SELECT unblock_value('email', 'BOT@shop.example') AS unblocked;
SELECT unblock_value('email', 'bot@shop.example') AS unblocked_again;
SELECT blocked FROM namespaces WHERE name = 'email';

-- normalize_identifier: the stored form, NULL if unusable or blocked
SELECT v, normalize_identifier('email', v) AS email
FROM unnest(ARRAY[' Ann@Shop.Example ', 'ann@shop.example', 'TEST@example.com', 'no address',
                  '', '   ', NULL]) v;
SELECT v, normalize_identifier('anonymous_id', v) AS anonymous_id
FROM unnest(ARRAY['  c0ffee ', 'unknown', ' 0 ', '00', '']) v;
SELECT v, normalize_identifier('phone', v) AS phone
FROM unnest(ARRAY['07700 900123', '+44 7700 900123', '0044 7700 900123', 'call me']) v;
SELECT normalize_identifier('nope', 'x');

-- drop_namespace: unknown, or holding identifiers, is an error
SELECT create_namespace('scratch');
SELECT identify('scratch', 'v1') IS NOT NULL AS identified;
SELECT drop_namespace('scratch');
SELECT drop_namespace('nope');
SELECT drop_namespace(NULL);
SELECT relation, removed FROM forget('scratch', 'v1');
SELECT drop_namespace('scratch');
SELECT drop_namespace(repeat('n', 63));
SELECT count(*) FILTER (WHERE name IN ('scratch', repeat('n', 63))) AS dropped_left
FROM namespaces;

-- Helpers: a profile named by its key identifier, and the merge log with
-- profiles named so.  A profile id is a hash of the key identifier, so the
-- id of a profile that no longer exists is looked up among ids seen before.
CREATE TABLE idt.seen (id bigint PRIMARY KEY, label text NOT NULL);
CREATE FUNCTION idt.note() RETURNS void LANGUAGE sql AS $$
  INSERT INTO idt.seen
  SELECT p.id, n.name || ':' || p.key_value FROM personalize.profiles p JOIN personalize.namespaces n ON n.id = p.key_namespace_id
  ON CONFLICT (id) DO NOTHING $$;
CREATE FUNCTION idt.who(p bigint) RETURNS text LANGUAGE sql AS $$
  SELECT coalesce((SELECT n.name || ':' || key_value FROM personalize.profiles pr
                     JOIN personalize.namespaces n ON n.id = pr.key_namespace_id WHERE pr.id = p),
                  (SELECT label || ' (gone)' FROM idt.seen WHERE id = p),
                  p::text) $$;
CREATE FUNCTION idt.log() RETURNS TABLE (action text, from_profile text, into_profile text,
                                             a text, b text)
LANGUAGE sql AS $$
  SELECT action, idt.who(from_profile), idt.who(into_profile),
         namespace_a || ':' || value_a, namespace_b || ':' || value_b
  FROM personalize.merge_log ORDER BY id $$;
CREATE FUNCTION idt.reset() RETURNS void LANGUAGE sql AS $$
  TRUNCATE personalize.identities, personalize.profiles, personalize.merge_log,
           personalize.refused_links $$;
-- the graph's invariants: every identifier's profile exists, every profile
-- holds identifiers, its key among them and the best of them
CREATE FUNCTION idt.consistent() RETURNS boolean LANGUAGE sql AS $$
  SELECT NOT EXISTS (SELECT FROM personalize.identities i
                     WHERE NOT EXISTS (SELECT FROM personalize.profiles p WHERE p.id = i.profile_id))
     AND NOT EXISTS (SELECT FROM personalize.profiles p
                     WHERE NOT EXISTS (SELECT FROM personalize.identities i WHERE i.profile_id = p.id))
     AND NOT EXISTS (SELECT FROM personalize.profiles p
                     WHERE NOT EXISTS (
                       SELECT FROM (SELECT i.namespace_id, i.value FROM personalize.identities i
                                      JOIN personalize.namespaces n ON n.id = i.namespace_id
                                     WHERE i.profile_id = p.id
                                     ORDER BY n.priority DESC, n.name, i.value COLLATE "C" LIMIT 1) best
                       WHERE best.namespace_id = p.key_namespace_id AND best.value = p.key_value)) $$;

-- ===== normalizers in namespaces ===========================================

-- One address, however it is typed: one identifier, one profile.
SELECT identify('email', ' Ann@Shop.Example ') = identify('email', 'ann@shop.example') AS same,
       resolve('email', 'ANN@SHOP.EXAMPLE') = resolve('email', 'ann@shop.example') AS resolves_same;
SELECT n.name, i.value FROM identities i JOIN namespaces n ON n.id = i.namespace_id;
SELECT namespace, value FROM identifiers(resolve('email', 'ann@shop.example'));
-- Profile ids are hashes of the key identifier: the same on every server.
SELECT resolve('email', 'ann@shop.example') AS ann_id, identify('customer_id', ' 42') AS c42_id;
-- UK numbers, national or international, are one phone
SELECT identify('phone', '07700 900123') = identify('phone', '+44 7700 900123') AS same_phone;
SELECT idt.reset();

-- ===== anonymous -> login -> second device =================================

-- A visitor browses anonymously: a profile keyed by the cookie from the first event.
SELECT identify('{"anonymous_id": "cookie-a"}') AS anon_a \gset
SELECT :anon_a = resolve('anonymous_id', 'cookie-a') AS resolves, idt.who(:anon_a);
SELECT idt.note();
-- They log in: the event carries the cookie, the customer id and the email.
-- The anonymous profile merges into the customer's, keyed by the customer id.
SELECT identify('{"anonymous_id": "cookie-a", "customer_id": "42", "email": " Ann@Shop.Example "}')
    AS customer \gset
SELECT idt.who(:customer), :customer = resolve('customer_id', '42') AS is_customers,
       resolve('anonymous_id', 'cookie-a') = :customer AS cookie_follows,
       (SELECT count(*) FROM profiles WHERE id = :anon_a) AS anon_profile_rows;
SELECT idt.note();
-- A second device: anonymous first, then it gives the email at checkout.
SELECT idt.who(identify('{"anonymous_id": "cookie-b"}'));
SELECT idt.note();
SELECT idt.who(identify('{"anonymous_id": "cookie-b", "email": "ann@shop.example"}'));
-- A third device logs straight in.
SELECT idt.who(identify('{"anonymous_id": "cookie-c", "customer_id": 42}'));
-- Every cookie resolves to the customer's profile.
SELECT c, idt.who(resolve('anonymous_id', c)), resolve('anonymous_id', c) = :customer AS customers
FROM unnest(ARRAY['cookie-a', 'cookie-b', 'cookie-c']) c;
SELECT namespace, value FROM identifiers(:customer);
SELECT * FROM idt.log();
SELECT count(*) AS profiles FROM profiles;
-- an event whose identifiers are all known and linked changes nothing
SELECT identify('{"anonymous_id": "cookie-b", "customer_id": "42"}') = :customer AS same,
       (SELECT count(*) FROM merge_log) AS log_entries, idt.consistent();

-- ===== two customer ids never merge (customer_id: at most 1) ===============

-- A kiosk cookie is seen with customer 1001 and then with customer 1002.
SELECT idt.who(identify('{"customer_id": "1001", "anonymous_id": "kiosk"}'));
SELECT idt.who(identify('{"customer_id": "1002", "anonymous_id": "kiosk"}'));
SELECT idt.who(resolve('anonymous_id', 'kiosk')) AS kiosk,
       resolve('customer_id', '1001') <> resolve('customer_id', '1002') AS apart;
-- explicitly, and through a shared email, the same
SELECT link('customer_id', '1001', 'customer_id', '1002') AS linked;
SELECT link('customer_id', '1002', 'email', 'family@shop.example') AS linked;
SELECT idt.who(identify('{"customer_id": "1001", "email": "family@shop.example"}'));
SELECT resolve('customer_id', '1001') <> resolve('customer_id', '1002') AS still_apart,
       idt.who(resolve('email', 'family@shop.example')) AS family_email;
-- each refusal once per pair; a repeat counts
SELECT idt.who(identify('{"customer_id": "1002", "anonymous_id": "kiosk"}'));
SELECT rule, rule_namespace, namespace_a || ':' || value_a AS a, namespace_b || ':' || value_b AS b,
       idt.who(profile_a) AS profile_a, idt.who(profile_b) AS profile_b, times
FROM refused_links ORDER BY id;
SELECT idt.consistent();
SELECT idt.reset();

-- ===== a shared family tablet: 40 emails, email at most 5 ===================

CREATE TABLE idt.tablet_events (n int, attributed bigint);
INSERT INTO idt.tablet_events
SELECT n, identify(jsonb_build_object('anonymous_id', 'tablet', 'email', format('kid%s@family.example', n)))
FROM generate_series(1, 40) n ORDER BY n;
-- The tablet holds the first five emails.
SELECT namespace, value FROM identifiers(resolve('anonymous_id', 'tablet'));
-- Every event went to the profile of its best identifier, its email.
SELECT count(*) AS events,
       count(*) FILTER (WHERE attributed = resolve('email', format('kid%s@family.example', n))) AS to_email,
       count(*) FILTER (WHERE attributed = resolve('anonymous_id', 'tablet')) AS to_tablet,
       count(DISTINCT attributed) AS profiles
FROM idt.tablet_events;
-- the other 35 were refused and recorded, each once
SELECT rule, rule_namespace, namespace_a, namespace_b || ':' || value_b AS b, count(*) AS pairs,
       min(value_a) AS first_a, sum(times) AS times,
       bool_and(profile_a = resolve('email', value_a)) AS profile_a_is_a,
       bool_and(profile_b = resolve('anonymous_id', 'tablet')) AS profile_b_is_tablet
FROM refused_links GROUP BY 1, 2, 3, 4;
SELECT count(*) AS refused_emails_linked
FROM refused_links r WHERE resolve(r.namespace_a, r.value_a) = resolve('anonymous_id', 'tablet');
-- a customer logs in on the tablet: the event is theirs, the tablet stays put
SELECT idt.who(identify('{"customer_id": "7", "anonymous_id": "tablet", "email": "kid7@family.example"}'));
SELECT namespace, value FROM identifiers(resolve('customer_id', '7'));
SELECT rule, rule_namespace, namespace_a || ':' || value_a AS a, namespace_b || ':' || value_b AS b,
       idt.who(profile_a) AS profile_a, idt.who(profile_b) AS profile_b
FROM refused_links WHERE namespace_a = 'customer_id';
-- two full profiles cannot join either
SELECT link('email', 'kid1@family.example', 'email', 'kid6@family.example') AS linked;
SELECT max(n) AS most_emails_in_a_profile
FROM (SELECT count(*) n FROM identities WHERE namespace_id = (SELECT id FROM namespaces WHERE name = 'email')
      GROUP BY profile_id) c;
SELECT idt.consistent();
SELECT idt.reset();

-- A lower limit applies to new links only; existing profiles are not re-checked.
SELECT link('phone', '+447700900001', 'loyalty_no', 'L1'), link('phone', '+447700900002', 'loyalty_no', 'L1');
SELECT alter_namespace('phone', max_per_profile => 1);
SELECT link('phone', '+447700900003', 'loyalty_no', 'L1') AS third_phone;
SELECT count(*) AS phones FROM identifiers(resolve('loyalty_no', 'L1')) WHERE namespace = 'phone';
SELECT alter_namespace('phone', max_per_profile => 2);
SELECT idt.reset();

-- ===== blocked values never link ===========================================

SELECT idt.who(identify('{"customer_id": "300", "email": "test@example.com", "anonymous_id": "0"}'));
SELECT idt.who(identify('{"customer_id": "301", "email": " TEST@example.com", "anonymous_id": "unknown"}'));
SELECT resolve('customer_id', '300') <> resolve('customer_id', '301') AS apart,
       resolve('email', 'test@example.com') AS test_email, resolve('anonymous_id', '0') AS zero,
       resolve('anonymous_id', 'unknown') AS unknown;
SELECT count(*) AS blocked_identities FROM identities WHERE value IN ('test@example.com', '0', 'unknown');
SELECT link('anonymous_id', 'unknown', 'customer_id', '300') AS linked;
SELECT link('anonymous_id', 'cookie-x', 'anonymous_id', '0') AS linked;
-- only an event's blocked identifiers: nothing usable
SELECT identify('{"email": "test@example.com", "anonymous_id": "unknown"}');
SELECT identify('anonymous_id', ' unknown ');
SELECT rule, rule_namespace, namespace_a || ':' || value_a AS a, namespace_b || ':' || value_b AS b,
       idt.who(profile_a) AS profile_a, idt.who(profile_b) AS profile_b, times
FROM refused_links ORDER BY id;
-- blocking does not undo a link made before
SELECT link('anonymous_id', 'shared-pc', 'customer_id', '300') AS linked;
SELECT block_value('anonymous_id', 'shared-pc');
SELECT resolve('anonymous_id', 'shared-pc') AS resolve_blocked,
       (SELECT count(*) FROM identities WHERE value = 'shared-pc') AS still_stored;
SELECT link('anonymous_id', 'shared-pc', 'customer_id', '301') AS linked;
SELECT unblock_value('anonymous_id', 'shared-pc');
SELECT idt.consistent();
SELECT idt.reset();

-- ===== priority decides key and attribution ================================

-- phone and loyalty_no share priority 60: the namespace name decides
SELECT idt.who(identify('{"phone": "+447700900123", "loyalty_no": "L-9"}'));
-- within a namespace, the smallest value by bytes ('Z' < 'a')
SELECT idt.who(identify('{"anonymous_id": "alpha"}'));
SELECT link('anonymous_id', 'alpha', 'anonymous_id', 'Zeta');
SELECT idt.who(resolve('anonymous_id', 'alpha'));
SELECT idt.who(identify('{"anonymous_id": "Zeta", "loyalty_no": "L-9"}'));
-- the customer id outranks the rest: key and attribution
SELECT idt.who(identify('{"anonymous_id": "alpha", "customer_id": "77"}'));
SELECT namespace, value FROM identifiers(resolve('customer_id', '77'));
-- Refused: the event goes to its best identifier's profile, which need not
-- be keyed by it.  customer 78 outranks phone; phone outranks the cookie.
SELECT idt.who(identify('{"customer_id": "78", "phone": "+447700900123"}'));
SELECT idt.who(identify('{"anonymous_id": "new-cookie", "phone": "+447700900123"}'));
SELECT idt.who(identify('{"anonymous_id": "other-cookie", "customer_id": "78", "loyalty_no": "L-9"}'));
SELECT idt.who(resolve('anonymous_id', 'other-cookie')) AS other_cookie;
SELECT idt.consistent();
SELECT idt.reset();

-- ===== split ===============================================================

SELECT identify('{"anonymous_id": "cookie-a"}') AS anon_a, identify('{"anonymous_id": "cookie-b"}') AS anon_b \gset
SELECT idt.note();
SELECT identify('{"anonymous_id": "cookie-a", "customer_id": "42", "email": "ann@shop.example"}') AS customer \gset
SELECT identify('{"anonymous_id": "cookie-b", "customer_id": "42"}') = :customer AS merged;
TRUNCATE merge_log;
-- Split a cookie off: it gets its own profile again, under its own id.
SELECT split('anonymous_id', 'cookie-b') = :anon_b AS own_id_again;
SELECT idt.who(resolve('anonymous_id', 'cookie-b')) AS cookie_b,
       idt.who(resolve('anonymous_id', 'cookie-a')) AS cookie_a;
SELECT idt.who(id), rebuild_pending FROM profiles ORDER BY 1;
SELECT * FROM idt.log();
-- Split the key identifier: the rest is re-keyed by its best remaining
-- identifier; the customer id keeps its id.
UPDATE profiles SET rebuild_pending = false;
SELECT idt.note();
SELECT split('customer_id', '42') = :customer AS customer_keeps_id;
SELECT idt.who(resolve('email', 'ann@shop.example')) AS rest,
       resolve('anonymous_id', 'cookie-a') = resolve('email', 'ann@shop.example') AS cookie_a_with_email;
SELECT namespace, value FROM identifiers(resolve('email', 'ann@shop.example'));
SELECT namespace, value FROM identifiers(:customer);
SELECT idt.who(id), rebuild_pending FROM profiles ORDER BY 1;
SELECT * FROM idt.log();
-- alone already: a notice, and its own profile
SELECT split('customer_id', '42') = :customer AS same;
SELECT split('anonymous_id', 'never-seen');
SELECT split('customer_id', NULL);
-- split ids are links like any other: linking again merges again
SELECT link('customer_id', '42', 'anonymous_id', 'cookie-b') AS linked,
       idt.who(resolve('anonymous_id', 'cookie-b'));
SELECT idt.consistent();
SELECT idt.reset();

-- ===== forget (right to erasure) ===========================================

-- A source table whose emails were typed by hand.
CREATE TABLE idt.orders (id int PRIMARY KEY, email text, cookie text, total numeric);
INSERT INTO idt.orders VALUES
  (1, ' ANN@shop.example', 'cookie-a', 10), (2, 'ann@shop.example  ', NULL, 20),
  (3, 'bob@shop.example', 'cookie-b', 30), (4, NULL, 'cookie-c', 40),
  (5, 'not an address', 'cookie-z', 50), (6, 'Ann@Shop.Example', 'cookie-a2', 60);
SELECT idt.who(identify('{"anonymous_id": "cookie-a", "customer_id": "42", "email": "ann@shop.example"}'));
SELECT idt.who(identify('{"anonymous_id": "cookie-c", "email": "ann@shop.example"}'));
SELECT idt.who(identify('{"anonymous_id": "cookie-b", "email": "bob@shop.example"}'));
SELECT link('customer_id', '43', 'anonymous_id', 'cookie-c');   -- refused: recorded with Ann's profile
SELECT split('anonymous_id', 'cookie-c') IS NOT NULL AS split_off;
SELECT link('customer_id', '42', 'anonymous_id', 'cookie-c');
SELECT count(*) AS log_entries FROM merge_log;
SELECT resolve('customer_id', '42') AS ann \gset
-- forget any one of Ann's identifiers: the whole person goes
SELECT * FROM forget('email', ' ANN@shop.example ',
                     ARRAY[('idt.orders', 'email', 'email'),
                           ('idt.orders', 'cookie', 'anonymous_id')]::source_column[]);
SELECT id, email, cookie FROM idt.orders ORDER BY id;
-- the same session: forget emptied its identity cache
SELECT resolve('customer_id', '42') AS c42, resolve('anonymous_id', 'cookie-a') AS cookie_a,
       resolve('anonymous_id', 'cookie-c') AS cookie_c, resolve('email', 'ann@shop.example') AS email;
SELECT (SELECT count(*) FROM identities WHERE profile_id = :ann) AS identities,
       (SELECT count(*) FROM profiles WHERE id = :ann) AS profiles,
       (SELECT count(*) FROM merge_log m WHERE :ann IN (from_profile, into_profile)
           OR 'ann@shop.example' IN (value_a, value_b) OR 'cookie-a' IN (value_a, value_b)) AS log,
       (SELECT count(*) FROM refused_links WHERE :ann IN (profile_a, profile_b)
           OR value_a IN ('42', 'cookie-a', 'cookie-c') OR value_b IN ('42', 'cookie-a', 'cookie-c')) AS refused;
-- Bob is untouched
SELECT idt.who(resolve('anonymous_id', 'cookie-b')), (SELECT count(*) FROM profiles) AS profiles;
SELECT idt.consistent();
-- An identifier never seen: nothing in the graph, but its source rows go.
INSERT INTO idt.orders VALUES (7, 'ANN@Shop.example', NULL, 70);
SELECT * FROM forget('email', 'ann@shop.example', ARRAY[('idt.orders', 'email', 'email')]::source_column[]);
SELECT * FROM forget('anonymous_id', 'cookie-z', ARRAY[('idt.orders', 'cookie', 'anonymous_id')]::source_column[]);
-- A blocked value is never in the graph; forgetting it removes the refusals that name it.
SELECT link('customer_id', '44', 'email', 'test@example.com');
SELECT relation, removed FROM forget('email', 'test@example.com') WHERE relation LIKE '%refused%';
-- bad source columns: nothing is deleted
SELECT * FROM forget('email', 'bob@shop.example', ARRAY[('idt.orders', 'mail', 'email')]::source_column[]);
SELECT * FROM forget('email', 'bob@shop.example', ARRAY[('idt.orders', 'email', NULL)]::source_column[]);
SELECT * FROM forget('email', 'bob@shop.example', ARRAY[('idt.orders', 'email', 'nope')]::source_column[]);
SELECT * FROM forget('email', 'bob@shop.example', ARRAY[('idt.nope', 'email', 'email')]::source_column[]);
SELECT idt.who(resolve('email', 'bob@shop.example')), (SELECT count(*) FROM idt.orders) AS orders;
-- quoted names are quoted
CREATE TABLE idt."Odd ""Table""" ("E-Mail" text);
INSERT INTO idt."Odd ""Table""" VALUES ('Bob@Shop.Example'), ('carl@shop.example');
SELECT * FROM forget('email', 'bob@shop.example',
                     ARRAY[('idt."Odd ""Table"""', 'E-Mail', 'email')]::source_column[]);
SELECT * FROM idt."Odd ""Table""";
SELECT idt.reset();

-- ===== bad input ===========================================================

SELECT resolve('nope', 'x');
SELECT identify('nope', 'x');
SELECT link('email', 'a@b.c', 'nope', 'x');
SELECT resolve(NULL, 'x');
SELECT resolve('email', NULL);
SELECT identify(NULL, 'x');
SELECT identify('email', NULL);
SELECT link('email', 'a@b.c', 'customer_id', NULL);
SELECT identify('anonymous_id', '');
SELECT identify('customer_id', E' \t\n');
SELECT identify('email', 'not an address');
SELECT resolve('email', '   ');
SELECT identify(NULL::jsonb);
SELECT identify('[{"email": "a@b.c"}]'::jsonb);
SELECT identify('"a@b.c"'::jsonb);
SELECT identify('{}'::jsonb);
SELECT identify('{"email": null, "anonymous_id": "  ", "customer_id": ""}'::jsonb);
SELECT identify('{"nope": "x"}'::jsonb);
SELECT identify('{"email": ["a@b.c"]}'::jsonb);
SELECT identify('{"customer_id": true}'::jsonb);
-- unusable values of an event are skipped, numbers are read as text
SELECT idt.who(identify('{"email": "not an address", "anonymous_id": "", "customer_id": 500}'::jsonb)),
       resolve('customer_id', '500') IS NOT NULL AS as_text;
-- nothing was written by the errors
SELECT count(*) AS identities FROM identities;
-- values longer than personalize.max_value_bytes
SELECT identify('anonymous_id', repeat('x', 2049));   -- personalize.max_value_bytes is 2048
SELECT resolve('anonymous_id', repeat('x', 2048)) AS at_the_limit;
-- writers need READ COMMITTED
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT identify('anonymous_id', 'rr');
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT resolve('anonymous_id', 'rr') AS reading_is_fine;
COMMIT;
SELECT idt.reset();

-- ===== connected_components ================================================

CREATE TABLE idt.edges (a text, b text);
INSERT INTO idt.edges VALUES ('c', 'b'), ('b', 'a'), ('x', 'y'), ('y', 'y'), ('a', 'c'), ('a', 'c'),
  ('lonely', NULL), (NULL, NULL), ('Z', 'z'), ('é', 'f');
SELECT * FROM connected_components('SELECT a, b FROM idt.edges') ORDER BY component, identifier;
-- any column types, read as their text output
SELECT * FROM connected_components($$SELECT 10::bigint, 9::int UNION ALL SELECT 9, 100$$)
ORDER BY identifier;
SELECT * FROM connected_components('SELECT a, b FROM idt.edges WHERE false');
SELECT count(*) AS rows_for_null FROM connected_components(NULL);
SELECT * FROM connected_components('SELECT a, b, a FROM idt.edges');
SELECT * FROM connected_components('SELECT a FROM idt.edges');
SELECT * FROM connected_components('DELETE FROM idt.edges RETURNING a, b');
-- a SELECT that modifies data is refused too
SELECT * FROM connected_components('WITH d AS (DELETE FROM idt.edges RETURNING a, b) SELECT * FROM d');
SELECT * FROM connected_components('SELECT 1, 2; SELECT 3, 4');
SELECT * FROM connected_components('SELEC a, b FROM idt.edges');
SELECT * FROM connected_components('SELECT a, b FROM idt.no_such_table');
SELECT count(*) AS edges_kept FROM idt.edges;

-- ===== a dropped normalizer breaks only its own namespace ==================
CREATE FUNCTION idt.short_lived(text) RETURNS text IMMUTABLE LANGUAGE sql RETURN lower($1);
SELECT create_namespace('doomed', 1, NULL, 'idt.short_lived(text)'), create_namespace('survivor', 0);
SELECT identify('doomed', 'X') IS NOT NULL AS identified;
SELECT identify('survivor', 's1') AS s1 \gset
DROP FUNCTION idt.short_lived(text);
SELECT identify('doomed', 'Y');                              -- ERROR: its normalizer is gone
SELECT resolve('survivor', 's1') = :s1 AS others_still_work;
SELECT count(*) FROM forget('doomed', 'x');                  -- ERROR too: forget normalizes
-- its identifiers can still be removed by hand, and the namespace dropped
DELETE FROM profiles WHERE key_namespace_id = (SELECT id FROM namespaces WHERE name = 'doomed');
DELETE FROM identities WHERE namespace_id = (SELECT id FROM namespaces WHERE name = 'doomed');
SELECT drop_namespace('doomed');
SELECT relation, removed FROM forget('survivor', 's1') WHERE removed > 0;

-- ===== what the direct table access refuses, and rolled-back namespaces =====
SELECT create_namespace('plain', 0);
CREATE INDEX identities_lower_idx ON identities (lower(value));
SELECT identify('plain', 'p1');                              -- ERROR: an expression index
DROP INDEX identities_lower_idx;
CREATE ROLE regress_pz_rls IN ROLE personalize_admin;
ALTER TABLE identities ENABLE ROW LEVEL SECURITY;
SET ROLE regress_pz_rls;
SELECT identify('plain', 'p1');                              -- ERROR: row-level security
RESET ROLE;
ALTER TABLE identities DISABLE ROW LEVEL SECURITY;
DROP ROLE regress_pz_rls;
BEGIN;
SAVEPOINT s;
SELECT create_namespace('ghost', 0);
SELECT normalize_identifier('ghost', 'g1');
ROLLBACK TO s;
SELECT identify('ghost', 'g1');                              -- ERROR: rolled back with its savepoint
ROLLBACK;
-- DML under session_replication_role = replica still reaches this backend's cache
SELECT identify('plain', 'p2') IS NOT NULL AS identified, resolve('plain', 'p2') IS NOT NULL AS cached;
SET session_replication_role = replica;
DELETE FROM profiles WHERE id = resolve('plain', 'p2');
DELETE FROM identities WHERE value = 'p2';
RESET session_replication_role;
SELECT resolve('plain', 'p2') AS after_delete;
SELECT drop_namespace('plain');

-- ===== clean up ============================================================

SELECT drop_namespace(name) FROM namespaces ORDER BY id;
SELECT count(*) AS left_over FROM namespaces;
DROP SCHEMA idt CASCADE;

