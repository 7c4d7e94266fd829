-- Fuzzing of every trait state's and the profile's text input and binary receive.
--
-- Valid values of each type are mutated at random (characters or bytes
-- deleted, inserted, replaced, numbers made huge or negative, truncated,
-- duplicated) and fed to the type's input function, and to its receive
-- function through COPY ... (FORMAT binary).  Each attempt must either be
-- refused with an ERROR or give a value that survives output, accessors and
-- a second round trip unchanged.  A crash ends the session and the calling
-- test sees it.  Deterministic: setseed fixes the mutations.
--
-- Run with psql -v rounds=N; prints one line per type: accepted, refused.
SET search_path = personalize, public;
SET TimeZone = 'UTC';

CREATE TEMP TABLE fuzz_seeds (typ text, s text);
INSERT INTO fuzz_seeds
SELECT 'recent_state', recent_agg('sku-' || x, '2026-01-01'::timestamptz + x * interval '1 min', 4)::text FROM generate_series(1, 9) x
UNION ALL SELECT 'top_state', top_agg('c' || x % 3, '2026-01-01'::timestamptz + x * interval '1 h', 5, '1 day', x)::text FROM generate_series(1, 9) x
UNION ALL SELECT 'windowed_state', windowed_agg('2026-01-01'::timestamptz + x * interval '7 h', x)::text FROM generate_series(1, 30) x
UNION ALL SELECT 'distinct_state', distinct_agg(x, 5)::text FROM generate_series(1, 6) x
UNION ALL SELECT 'distinct_state', distinct_agg(x, 4)::text FROM generate_series(1, 600) x
UNION ALL SELECT 'first_state', first_agg('tier-' || x, '2026-01-01'::timestamptz + x * interval '1 d')::text FROM generate_series(1, 3) x
UNION ALL SELECT 'last_state', last_agg('tier-' || x, '2026-01-01'::timestamptz + x * interval '1 d')::text FROM generate_series(1, 3) x
UNION ALL SELECT 'session_state', session_agg('2026-01-01'::timestamptz + x * interval '20 min', 'c' || x % 2, 'i' || x)::text FROM generate_series(1, 12) x
UNION ALL SELECT 'metric_state', metric_agg('sum', x / 7.0)::text FROM generate_series(1, 9) x
UNION ALL SELECT 'metric_state', metric_agg('count', x)::text FROM generate_series(1, 9) x
UNION ALL SELECT 'metric_state', metric_agg('min', -x * 1000000000000)::text FROM generate_series(1, 9) x
UNION ALL SELECT 'profile', profile_set(profile_set(profile_set(profile_set('{}',
    2, recent_agg('sku-' || x, '2026-01-01'::timestamptz + x * interval '1 min', 3)),
    7, last_agg('tier-' || x, '2026-01-01'::timestamptz + x * interval '1 d')),
    300, distinct_agg(x, 4)),
    2147483647, windowed_agg('2026-01-01'::timestamptz + x * interval '5 h', x))::text FROM generate_series(1, 9) x
UNION ALL SELECT 'profile', profile_set(profile_set('{}',
    1, top_agg('c' || x % 3, '2026-01-01'::timestamptz + x * interval '1 h', 5, '1 day', x)),
    5, session_agg('2026-01-01'::timestamptz + x * interval '20 min', 'c' || x % 2, 'i' || x))::text FROM generate_series(1, 5) x;

CREATE FUNCTION pg_temp.fuzz_text(s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  pos int := 1 + floor(random() * greatest(length(s), 1))::int;
  junk text[] := ARRAY['{', '}', '[', ']', '"', ',', ':', '-', '9', '0', 'null', '1e308',
                       '-2147483649', '99999999999999999999', '"infinity"', '\u0000', 'é', ' '];
  pick text := junk[1 + floor(random() * array_length(junk, 1))::int];
BEGIN
  CASE floor(random() * 6)::int
    WHEN 0 THEN RETURN overlay(s PLACING '' FROM pos FOR 1 + floor(random() * 4)::int);
    WHEN 1 THEN RETURN overlay(s PLACING pick FROM pos FOR 0);
    WHEN 2 THEN RETURN overlay(s PLACING pick FROM pos FOR 1);
    WHEN 3 THEN RETURN left(s, pos);
    WHEN 4 THEN RETURN regexp_replace(s, '\d+', (ARRAY['-1', '0', '4294967296', '65', '1001', '17'])[1 + floor(random() * 6)::int]);
    ELSE RETURN overlay(s PLACING substr(s, pos, 20) FROM pos FOR 0);
  END CASE;
END $$;

CREATE FUNCTION pg_temp.fuzz_bytes(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
  pos int := floor(random() * greatest(length(b), 1))::int;
BEGIN
  IF length(b) = 0 THEN
    RETURN '\x01'::bytea;
  END IF;
  CASE floor(random() * 5)::int
    WHEN 0 THEN RETURN set_byte(b, pos, floor(random() * 256)::int);
    WHEN 1 THEN RETURN substr(b, 1, pos);
    WHEN 2 THEN RETURN overlay(b PLACING int4send((ARRAY[-1, 0, 2147483647, 65, 1001, 70000])[1 + floor(random() * 6)::int]) FROM pos + 1 FOR 4);
    WHEN 3 THEN RETURN overlay(b PLACING decode(md5(random()::text), 'hex') FROM pos + 1 FOR 0);
    ELSE RETURN set_byte(set_byte(b, pos, 255), greatest(pos - 1, 0), 127);
  END CASE;
END $$;

-- Receive through a binary COPY file of one field (see sql/binary_io.sql).
CREATE FUNCTION pg_temp.fuzz_recv(typ text, payload bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  lo oid;
  result text;
BEGIN
  lo := lo_from_bytea(0, '\x5047434f50590aff0d0a000000000000000000'::bytea || '\x0001'::bytea
                         || int4send(length(payload)) || payload || '\xffff'::bytea);
  PERFORM lo_export(lo, 'pz_fuzz.bin');
  PERFORM lo_unlink(lo);
  EXECUTE format('TRUNCATE fuzz_target_%s', typ);
  EXECUTE format('COPY fuzz_target_%s FROM %L (FORMAT binary)', typ, 'pz_fuzz.bin');
  EXECUTE format('SELECT v::text FROM fuzz_target_%s', typ) INTO result;
  RETURN result;
END $$;

DO $$ DECLARE t text; BEGIN
  FOR t IN SELECT DISTINCT typ FROM fuzz_seeds LOOP
    EXECUTE format('CREATE TEMP TABLE fuzz_target_%s (v %s)', t, t);
  END LOOP; END $$;

-- Whatever was accepted must print, read back to itself, and answer its accessors.
CREATE FUNCTION pg_temp.fuzz_accepted(typ text, v text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE again text;
BEGIN
  EXECUTE format('SELECT (%L::%s)::text', v, typ) INTO again;
  IF again IS DISTINCT FROM v THEN
    RAISE EXCEPTION 'FUZZ FAILURE: % does not round-trip: % -> %', typ, v, again;
  END IF;
  EXECUTE format('SELECT (%L::%s || %L::%s)::text', v, typ, v, typ) INTO again;
  EXECUTE CASE typ
    WHEN 'recent_state' THEN format('SELECT recent_values(%L), recent_times(%L)', v, v)
    WHEN 'top_state' THEN format('SELECT top_values(%L), top_weights(%L, now())', v, v)
    WHEN 'windowed_state' THEN format('SELECT windowed_count(%L, ''1 day'', now()), windowed_sum(%L, ''7 days'')', v, v)
    WHEN 'distinct_state' THEN format('SELECT distinct_count(%L)', v)
    WHEN 'first_state' THEN format('SELECT event_value(%L::first_state), event_time(%L::first_state)', v, v)
    WHEN 'last_state' THEN format('SELECT event_value(%L::last_state), event_time(%L::last_state)', v, v)
    WHEN 'profile' THEN format('SELECT profile_traits(%L), profile_remove(%L, 2)', v, v)
    WHEN 'metric_state' THEN format('SELECT metric_value(%L), metric_count(%L), metric_op(%L)', v, v, v)
    ELSE format('SELECT session_info(%L), session_dominant_category(%L)', v, v) END;
END $$;

CREATE TEMP TABLE fuzz_result (typ text, path text, accepted int, refused int);

DO $$
DECLARE
  r record;
  i int;
  m text;
  b bytea;
  v text;
  acc int;
  ref int;
  racc int;
  rref int;
BEGIN
  PERFORM setseed(0.5);
  FOR r IN SELECT typ, s FROM fuzz_seeds ORDER BY typ, length(s) LOOP
    acc := 0; ref := 0; racc := 0; rref := 0;
    FOR i IN 1 .. current_setting('fuzz.rounds')::int LOOP
      m := pg_temp.fuzz_text(r.s);
      IF random() < 0.3 THEN m := pg_temp.fuzz_text(m); END IF;
      BEGIN
        EXECUTE format('SELECT (%L::%s)::text', m, r.typ) INTO v;
        PERFORM pg_temp.fuzz_accepted(r.typ, v);
        acc := acc + 1;
      EXCEPTION WHEN others THEN
        IF SQLERRM LIKE 'FUZZ FAILURE%' THEN RAISE; END IF;
        ref := ref + 1;
      END;
      EXECUTE format('SELECT %I(%L::%s)', r.typ || '_send', r.s, r.typ) INTO b;
      b := pg_temp.fuzz_bytes(b);
      IF random() < 0.3 THEN b := pg_temp.fuzz_bytes(b); END IF;
      BEGIN
        v := pg_temp.fuzz_recv(r.typ, b);
        PERFORM pg_temp.fuzz_accepted(r.typ, v);
        racc := racc + 1;
      EXCEPTION WHEN others THEN
        IF SQLERRM LIKE 'FUZZ FAILURE%' THEN RAISE; END IF;
        rref := rref + 1;
      END;
    END LOOP;
    INSERT INTO fuzz_result VALUES (r.typ, 'text', acc, ref), (r.typ, 'binary', racc, rref);
  END LOOP;
END $$;

SELECT typ, path, sum(accepted) AS accepted, sum(refused) AS refused
FROM fuzz_result GROUP BY typ, path ORDER BY typ, path;
