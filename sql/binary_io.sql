-- Binary send/receive of every trait state, and what receive refuses.
-- Receive is reached through COPY ... (FORMAT binary) from a file this test
-- writes with lo_export: a binary COPY file holding one field.
SET search_path = personalize, public;
SET TimeZone = 'UTC';
\set SHOW_CONTEXT never

CREATE FUNCTION binary_copy_in(typ regtype, payload bytea) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  path text := 'pz_binary_io.bin';
  lo oid;
  result text;
BEGIN
  lo := lo_from_bytea(0, '\x5047434f50590aff0d0a00'::bytea    -- signature
                         || '\x0000000000000000'::bytea       -- flags, extension
                         || '\x0001'::bytea                   -- one field
                         || int4send(length(payload)) || payload
                         || '\xffff'::bytea);                 -- trailer
  PERFORM lo_export(lo, path);
  PERFORM lo_unlink(lo);
  EXECUTE format('CREATE TEMP TABLE binary_copy_target (v %s)', typ);
  EXECUTE format('COPY binary_copy_target FROM %L (FORMAT binary)', path);
  SELECT v::text INTO result FROM binary_copy_target;
  DROP TABLE binary_copy_target;
  RETURN result;
END $$;

CREATE TABLE binary_samples (typ regtype, s text);
INSERT INTO binary_samples
SELECT 'recent_state'::regtype, recent_agg(x, '2026-01-01'::timestamptz + x * interval '1 min', 5)::text FROM generate_series(1, 20) x
UNION ALL SELECT 'top_state', top_agg(x % 4, '2026-01-01'::timestamptz + x * interval '1 min', 3, '1 hour')::text FROM generate_series(1, 20) x
UNION ALL SELECT 'windowed_state', windowed_agg('2026-01-01'::timestamptz + x * interval '17 min', x)::text FROM generate_series(1, 400) x
UNION ALL SELECT 'distinct_state', distinct_agg(x, 6)::text FROM generate_series(1, 3) x
UNION ALL SELECT 'distinct_state', distinct_agg(x, 6)::text FROM generate_series(1, 3000) x
UNION ALL SELECT 'first_state', first_agg(x, '2026-01-01'::timestamptz + x * interval '1 min')::text FROM generate_series(1, 20) x
UNION ALL SELECT 'last_state', last_agg(x, '2026-01-01'::timestamptz + x * interval '1 min')::text FROM generate_series(1, 20) x
UNION ALL SELECT 'session_state', session_agg('2026-01-01'::timestamptz + x * interval '13 min', 'c' || x % 3, 'i' || x)::text FROM generate_series(1, 200) x;

-- send then receive gives the same value, for every type
CREATE FUNCTION send_bytes(typ regtype, s text) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE b bytea;
BEGIN
  EXECUTE format('SELECT %I(%L::%s)', replace(typ::text, 'personalize.', '') || '_send', s, typ) INTO b;
  RETURN b;
END $$;
SELECT typ, binary_copy_in(typ, send_bytes(typ, s)) = s AS round_trip, length(send_bytes(typ, s)) AS bytes
FROM binary_samples ORDER BY typ, bytes;

-- the payload starts with the format version and the kind
SELECT typ, substring(send_bytes(typ, s) FROM 1 FOR 2) AS version_and_kind FROM binary_samples ORDER BY 1, 2;

-- refused: wrong version, wrong kind, truncated, trailing bytes, empty
SELECT binary_copy_in('recent_state', overlay(send_bytes(typ, s) PLACING '\x02' FROM 1 FOR 1)) FROM binary_samples WHERE typ = 'recent_state'::regtype;
SELECT binary_copy_in('last_state', send_bytes(typ, s)) FROM binary_samples WHERE typ = 'first_state'::regtype;
SELECT binary_copy_in('recent_state', '\x0109') ;
SELECT binary_copy_in(typ, substring(b FROM 1 FOR length(b) - 3))
FROM (SELECT typ, send_bytes(typ, s) b FROM binary_samples) q WHERE typ = 'session_state'::regtype;
SELECT binary_copy_in(typ, send_bytes(typ, s) || '\x00'::bytea) FROM binary_samples WHERE typ = 'top_state'::regtype;
SELECT binary_copy_in('windowed_state', '\x');
-- Crafted payloads.  Counts, lengths and deltas are varints (LEB128).
CREATE FUNCTION varint(v numeric) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE b bytea := '\x';
BEGIN
  LOOP
    IF v < 128 THEN RETURN b || set_byte('\x00'::bytea, 0, v::int); END IF;
    b := b || set_byte('\x00'::bytea, 0, (v % 128)::int + 128);
    v := floor(v / 128);
  END LOOP;
END $$;

-- refused: sizes, counts and lengths out of range
SELECT binary_copy_in('recent_state', '\x0101' || varint(0) || varint(0));
SELECT binary_copy_in('recent_state', '\x0101' || varint(5000) || varint(0));
SELECT binary_copy_in('recent_state', '\x0101' || varint(10) || varint(2147483647));
SELECT binary_copy_in('recent_state', '\x0101' || '\xffffffffffffffffffff01'::bytea);
SELECT binary_copy_in('recent_state', '\x0101' || varint(10) || varint(1) || int8send(0) || varint(4294967296));
SELECT binary_copy_in('recent_state', '\x0101' || varint(10) || varint(1) || int8send(0) || varint(1000000));
SELECT binary_copy_in('recent_state', '\x0101' || varint(10) || varint(2) || int8send(-211813400000000000) || varint(1) || '\x41'::bytea
                                      || varint(1000000000000000) || varint(1) || '\x42'::bytea);
SELECT binary_copy_in('first_state', '\x0105' || int8send(9223372036854775807) || varint(1) || '\x41'::bytea);
SELECT binary_copy_in('first_state', '\x0105' || int8send(0) || varint(1) || '\x00'::bytea);
-- refused: a value that is not text in the database's encoding (UTF8), which
-- text output, pg_dump and restore could not take back; in a state and in a
-- profile
SELECT binary_copy_in('first_state', '\x0105' || int8send(0) || varint(2) || '\xc328'::bytea);
SELECT binary_copy_in('recent_state', '\x0101' || varint(10) || varint(1) || int8send(0) || varint(1) || '\xff'::bytea);
SELECT binary_copy_in('profile', decode(replace(encode(profile_send(profile_set('{}', 1, first_agg('ab', '2026-01-01'::timestamptz))), 'hex'),
                                                '6162', 'c328'), 'hex'));
SELECT binary_copy_in('first_state', '\x0105' || int8send(0) || varint(2) || '\xc3a9'::bytea) AS valid_utf8;
SELECT binary_copy_in('distinct_state', '\x010403' || '\x00'::bytea);
SELECT binary_copy_in('distinct_state', '\x010404' || '\x01'::bytea || '\x00000000000000000000000000000063'::bytea);
SELECT binary_copy_in('distinct_state', '\x010404' || '\x07'::bytea);
SELECT binary_copy_in('distinct_state', '\x010404' || '\x00'::bytea || varint(2) || varint(3) || '\x01'::bytea || varint(0) || '\x02'::bytea);
SELECT binary_copy_in('windowed_state', '\x0103' || int8send(0) || varint(1) || '\x00'::bytea || varint(1) || varint(0) || varint(5));
SELECT binary_copy_in('windowed_state', '\x0103' || int8send(0) || varint(3) || '\x00'::bytea || varint(2) || varint(10) || varint(1) || varint(0) || varint(1));
SELECT binary_copy_in('windowed_state', '\x0103' || int8send(0) || varint(1) || '\x02'::bytea);
SELECT binary_copy_in('top_state', '\x0102' || varint(3) || int8send(3600000000) || int8send(0) || varint(1) || float8send('NaN') || varint(1) || '\x41'::bytea);
SELECT binary_copy_in('session_state', '\x0107' || int8send(1800000000) || varint(65));
SELECT binary_copy_in('session_state', '\x0107' || int8send(1800000000) || varint(1) || int8send(0) || varint(60) || varint(1) || '\x01'::bytea || varint(61));
SELECT binary_copy_in('top_state', '\x0102' || varint(3) || int8send(200 * 366 * 86400000000::bigint) || int8send(0) || varint(0));
SELECT binary_copy_in('session_state', '\x0107' || int8send(200 * 366 * 86400000000::bigint) || varint(0));
SELECT binary_copy_in('session_state', '\x0107' || int8send(1800000000) || varint(1) || int8send(9223371000000000000) || varint(9223372036854775807));
-- a session's repeated categories fold, as they do in text input
SELECT binary_copy_in('session_state', '\x0107' || int8send(1800000000) || varint(1) || int8send(0) || varint(0) || varint(4) || '\x00'::bytea
    || varint(3) || varint(1) || varint(1) || '\x61'::bytea || varint(1) || varint(1) || '\x61'::bytea || varint(2) || varint(1) || '\x62'::bytea)
     = '{"gap": "00:30:00", "sessions": [{"start": "2000-01-01", "end": "2000-01-01", "events": 4, "last_item": null, "last_item_time": null, "categories": [["a", 2], ["b", 2]]}]}'::session_state::text AS folded;
-- accepted and put in canonical form: ties and duplicates in any order
SELECT binary_copy_in('recent_state', '\x0101' || varint(3) || varint(3)
    || int8send(0) || varint(1) || '\x42'::bytea
    || varint(0) || varint(1) || '\x41'::bytea
    || varint(60000000) || varint(1) || '\x42'::bytea);
SELECT binary_copy_in('windowed_state', '\x0103' || int8send(7200000000) || varint(2) || '\x00'::bytea || varint(2) || varint(2880) || varint(1) || varint(1) || varint(1));
