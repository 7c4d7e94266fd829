-- The newcomer's first hour: what a first registration in a database that no
-- worker streams says, and the mistakes that must not pass silently.
\set SHOW_CONTEXT never
SET search_path = personalize, public;
CREATE SCHEMA fh;
CREATE TABLE fh.clicks (visitor text, at timestamptz, page text, props jsonb);
INSERT INTO fh.clicks VALUES ('v1', '2026-01-01 10:00', '/shoes', '{"size": "44"}');
SELECT create_namespace('fh_visitor');
-- the first registration of the session says that profiles change only by rebuild()
SELECT register_source('fh.clicks', '{"visitor": "fh_visitor"}', 'at',
                       fields => '{"size": {"column": "props", "key": "size"}}') > 0 AS registered;
-- a field no source has is an ERROR that lists the fields there are
SELECT add_trait('fh_pages', 'recent', field => 'pages', sources => '{fh.clicks}');
SELECT add_trait('fh_sizes', 'recent', field => 'sizes');
SELECT add_trait('fh_pages', 'recent', field => 'page', sources => '{fh.clicks}') > 0 AS added;
SELECT alter_trait('fh_pages', field => 'pagez');
SELECT fh_pages FROM profile_view WHERE profile_id = resolve('fh_visitor', 'v1');
-- a backfill of a trait restricted to one source reads that source only:
-- another source, whose namespace cannot normalize, is not touched by it,
-- while rebuild() leaves that source's events out as dead letters
SELECT create_namespace('fh_device', 0, NULL, 'personalize.normalize_trim(text)');
CREATE TABLE fh.other (device text, at timestamptz);
INSERT INTO fh.other VALUES ('d1', '2026-01-01 11:00');
SELECT register_source('fh.other', '{"device": "fh_device"}', 'at') > 0 AS registered;
UPDATE namespaces SET normalizer = 'pg_catalog.int4recv(internal)' WHERE name = 'fh_device';
SELECT add_trait('fh_size', 'last', field => 'size', sources => '{fh.clicks}') > 0 AS added;
SELECT fh_size FROM profile_view WHERE profile_id = resolve('fh_visitor', 'v1');
SELECT count(*) AS dead_letters_of_other FROM dead_letters WHERE source = 'fh.other'::regclass;
SELECT rebuild() > 0 AS rebuilt;
SELECT source, events, reason, event FROM dead_letters WHERE source = 'fh.other'::regclass;
DELETE FROM dead_letters WHERE source = 'fh.other'::regclass;
-- a trait's parameter written by hand past add_trait's checks: rebuild()
-- names the trait, its field and column, and the source, not its SQL
UPDATE traits SET n = 0 WHERE name = 'fh_pages';
SELECT rebuild();
UPDATE traits SET n = 10 WHERE name = 'fh_pages';
-- clean up
SELECT drop_trait('fh_pages'), drop_trait('fh_size');
SELECT unregister_source('fh.clicks'), unregister_source('fh.other');
SELECT count(*) > 0 AS forgotten FROM forget('fh_visitor', 'v1');
UPDATE namespaces SET normalizer = 'personalize.normalize_trim(text)' WHERE name = 'fh_device';
SELECT count(*) > 0 AS forgotten FROM forget('fh_device', 'd1');
SELECT drop_namespace('fh_visitor'), drop_namespace('fh_device');
DROP SCHEMA fh CASCADE;
