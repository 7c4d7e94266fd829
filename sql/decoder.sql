-- The output plugin (SPEC §4): a slot of the personalize plugin decodes only
-- registered sources and only their mapped columns, as the configuration
-- stood when each transaction committed; values as `column::text` gives
-- them; updates, deletes and truncates as counts; rows it cannot read as
-- bad rows.  decode_message() renders each binary message as jsonb (LSNs,
-- times and xids left out below: they differ from run to run).  Runs in a
-- database of its own, with no worker streaming it.
\set regress_db :DBNAME
CREATE DATABASE pz_decoder;
\c pz_decoder
SET client_min_messages = warning;
CREATE EXTENSION personalize;
SET search_path = personalize, public;
SET TimeZone = 'UTC';
-- some PostgreSQL builds list the output plugins they allow
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'output_plugin_libraries') THEN
        PERFORM set_config('output_plugin_libraries',
                           current_setting('output_plugin_libraries') || ', personalize', false);
    END IF;
END $$;

SELECT create_namespace('uid', priority => 100, max_per_profile => 1);
SELECT create_namespace('email', priority => 50, normalizer => 'personalize.normalize_email(text)');
CREATE SCHEMA dec;
CREATE TABLE dec.events (id serial, uid bigint, email text, kind text, sku text, price numeric,
                         props jsonb, flag boolean, code char(6), ts timestamp, secret text);
CREATE TABLE dec.unrelated (x integer);

-- the slot starts before the registration: rows written before it are not events
SELECT 'slot' FROM pg_create_logical_replication_slot('pz_decoder', 'personalize');
CREATE FUNCTION messages() RETURNS SETOF jsonb LANGUAGE sql AS $$
    SELECT personalize.decode_message(data) - 'commit_lsn' - 'end_lsn' - 'commit_time' - 'xid'
      FROM pg_logical_slot_get_binary_changes('pz_decoder', NULL, NULL)
$$;
INSERT INTO dec.events (uid, kind, ts) VALUES (1, 'view', '2026-01-01 10:00');
SELECT * FROM messages();

SELECT register_source('dec.events', identifiers => '{"uid": "uid", "email": "email"}',
                       event_time => 'ts', event_type_column => 'kind',
                       fields => '{"size": {"column": "props", "key": "size"}}', backfill => false);
SELECT add_trait('viewed', 'recent', field => 'sku', event_types => '{view}', backfill => false);
SELECT add_trait('spent', 'sum', field => 'price', backfill => false);
SELECT add_trait('events', 'count', backfill => false);
SELECT add_trait('size', 'last', field => 'size', backfill => false);
SELECT add_trait('flagged', 'last', field => 'flag', backfill => false);
SELECT add_trait('code', 'last', field => 'code', backfill => false);
SELECT * FROM messages();  -- the configuration itself is not decoded

-- events: only mapped columns (secret and id are not sent), values as text
-- (a boolean as 'true', char(n) without its padding, a jsonb key's value),
-- NULL identifiers left out, traits filtered by event type; another table's
-- rows and an aborted transaction give nothing
INSERT INTO dec.events (uid, email, kind, sku, price, props, flag, code, ts, secret)
VALUES (1, ' A@Example.com', 'view', 'sku-1', 9.90, '{"size": "42"}', true, 'ab', '2026-01-01 10:00', 'x'),
       (NULL, 'b@example.com', 'buy', 'sku-2', 20, '{"size": 43}', NULL, NULL, '2026-01-01 11:00', 'y');
INSERT INTO dec.unrelated VALUES (1);
BEGIN;
INSERT INTO dec.events (uid, kind, ts) VALUES (3, 'view', '2026-01-01 12:00');
ROLLBACK;
SELECT * FROM messages();

-- updates, deletes and truncates are not events: counted per source
UPDATE dec.events SET sku = 'sku-3' WHERE uid = 1;
DELETE FROM dec.events WHERE uid IS NULL;
TRUNCATE dec.events;
SELECT * FROM messages();

-- a trait added later feeds from the next transaction on: the messages name it
SELECT add_trait('kinds', 'distinct', field => 'kind', backfill => false);
INSERT INTO dec.events (uid, kind, ts) VALUES (2, 'view', '2026-01-02');
SELECT m -> 'traits' AS traits_then FROM messages() m WHERE m ->> 'type' = 'I';

-- a row without a time is sent (the worker keeps it as a dead letter); a
-- mapped column dropped makes every row a bad row, with its reason
INSERT INTO dec.events (uid, kind, ts) VALUES (2, 'view', NULL);
ALTER TABLE dec.events DROP COLUMN flag;
INSERT INTO dec.events (uid, kind, ts) VALUES (2, 'view', '2026-01-03');
SELECT * FROM messages();

-- unregistered: no longer decoded
SELECT drop_trait(name) FROM traits ORDER BY id;
SELECT unregister_source('dec.events');
INSERT INTO dec.events (uid, kind, ts) VALUES (2, 'view', '2026-01-04');
SELECT * FROM messages();

-- decode_message rejects what is not a message
SELECT decode_message('\x5a');
SELECT decode_message('\x4300');
SELECT decode_message('\x4901');
SELECT 'dropped' FROM pg_drop_replication_slot('pz_decoder');

\c :regress_db
DROP DATABASE pz_decoder;
