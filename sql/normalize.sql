-- Identifier normalizers: one form per identifier, NULL for unusable values.
-- The test cluster is initdb --no-locale --encoding=UTF8: lower() and so
-- normalize_email lowercase ASCII letters only, so Unicode letters here are
-- ones that are lowercase already, or compared with lower() itself.
SET search_path = personalize, public;
\pset null '(null)'
-- Inputs shown with invisible and space characters spelled <U+XXXX>.
CREATE FUNCTION pg_temp.shown(s text) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(CASE WHEN c ~ '[\u0000-\u001f\u007f-\u00a0\u00ad\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff]'
                         THEN format('<U+%s>', upper(lpad(to_hex(ascii(c)), 4, '0'))) ELSE c END,
                    '' ORDER BY i)
  FROM regexp_split_to_table(s, '') WITH ORDINALITY AS t(c, i) $$;

-- The normalizers and normalize_identifier, as declared.
SELECT p.oid::regprocedure AS function, p.provolatile AS vol, p.proisstrict AS strict,
       p.proparallel AS par, obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment
FROM pg_proc p
WHERE p.pronamespace = 'personalize'::regnamespace AND p.proname LIKE 'normalize%'
ORDER BY p.oid::regprocedure::text;

-- ===== normalize_trim ======================================================

-- Unicode spaces, NBSP, zero-width space and BOM go from both ends; inner
-- whitespace stays.
SELECT normalize_trim(E'\u00a0 \ufeffhi  there\u200b\u3000\t\r\n') AS trimmed;
-- Every character trimmed, alone at both ends of 'x'.
SELECT to_hex(cp) AS cp, normalize_trim(chr(cp) || 'x' || chr(cp)) AS trimmed
FROM unnest(ARRAY[9, 10, 11, 12, 13, 32, x'85'::int, x'a0'::int, x'1680'::int,
                  x'2000'::int, x'2005'::int, x'200a'::int, x'200b'::int, x'2028'::int,
                  x'2029'::int, x'202f'::int, x'205f'::int, x'3000'::int, x'feff'::int]) cp;
-- Not whitespace, so kept: zero-width non-joiner, word joiner, soft hyphen,
-- and multibyte characters whose last byte is also the last byte of a space
-- (Š is C5 A0 like NBSP's C2 A0; ₅ is E2 82 85; 䀀 is E4 80 80 like U+3000's
-- E3 80 80), and a 4-byte emoji.
SELECT length(normalize_trim(E'\u200c' || 'x' || E'\u2060')) AS zwnj_wj,
       length(normalize_trim(E'\u00ad' || 'x' || E'\u00ad')) AS soft_hyphen;
SELECT normalize_trim(v) AS kept, normalize_trim(v) = v AS byte_exact
FROM unnest(ARRAY['Š', 'ŠŠ', '₅', '䀀', '😀', E' \u00a0Š\u00a0 ', E'\u3000䀀\u3000']) v;
-- Nothing left: NULL.
SELECT normalize_trim('') AS empty, normalize_trim('   ') AS spaces,
       normalize_trim(E'\u00a0\u200b\ufeff\u3000\u2029') AS unicode_spaces,
       normalize_trim(NULL) AS null_in;
-- 10 MB: the trimmed value, linear time.
SELECT length(normalize_trim(repeat(' ', 5000000) || repeat('x', 10000000) || repeat(' ', 5000000)))
  AS len_10mb,
       normalize_trim(repeat(E'\u00a0', 5000000)) IS NULL AS nbsp_10mb_is_null;

-- ===== normalize_email =====================================================

SELECT pg_temp.shown(v) AS input, normalize_email(v) AS email
FROM unnest(ARRAY[
  'John.Doe@Example.COM',
  E'  \u00a0John.Doe@Example.COM\u200b\ufeff\n',
  'John.Doe+News@Example.COM',           -- the +tag stays (see _canonical)
  'josé@Example.COM',                    -- é is lowercase already: kept byte for byte
  'MÜLLER@Example.DE',                   -- in the C locale Ü stays as it is
  '用户@例子.广告',                       -- Unicode local part and domain
  'a@b',                                 -- a domain without a dot is allowed
  'o''brien!#$%&*/=?^_`{|}~-@example.com'
]) v;
-- Lowercasing is lower()'s, in any locale.
SELECT bool_and(normalize_email(v) = lower(v)) AS same_as_lower
FROM unnest(ARRAY['ÉMILE@Example.FR', 'ΣΊΣΥΦΟΣ@example.gr', 'ẞ@x.de', E'\u212Aelvin@X.com']) v;
-- Not an address: NULL.
SELECT pg_temp.shown(v) AS input, normalize_email(v) AS email
FROM unnest(ARRAY[
  'john.doe', 'john@doe@example.com', '@example.com', 'john@', '@',
  'john doe@example.com', E'john\tdoe@example.com', E'john\u00a0doe@example.com',
  E'john\u200bdoe@example.com', E'john\u0085doe@example.com', E'john\u007fdoe@example.com',
  'john@example com', 'john@.example.com', 'john@example.com.', 'john@example..com',
  'john@.', 'john.@example.com.'
]) v;
-- At most 254 bytes: 64 + '@' + 189.
SELECT length(normalize_email(repeat('a', 64) || '@' || repeat('b', 185) || '.com')) AS len_254,
       normalize_email(repeat('a', 64) || '@' || repeat('b', 186) || '.com') AS len_255,
       length(normalize_email('  ' || repeat('a', 64) || '@' || repeat('b', 185) || '.com  ')) AS padded_254,
       normalize_email(repeat('é', 100) || '@' || repeat('b', 50) || '.com') AS bytes_not_chars;
SELECT normalize_email('') AS empty, normalize_email(E' \u00a0 ') AS spaces,
       normalize_email(NULL) AS null_in;
-- 10 MB: NULL without lowercasing it; surrounding whitespace is still trimmed.
SELECT normalize_email(repeat('a', 10000000) || '@example.com') IS NULL AS long_is_null,
       normalize_email(repeat('A', 5000000) || '@' || repeat('B', 5000000)) IS NULL AS long2_is_null,
       normalize_email(repeat(' ', 5000000) || 'A@B.C' || repeat(E'\u3000', 2000000)) AS padded;

-- ===== normalize_email_canonical ===========================================

SELECT pg_temp.shown(v) AS input, normalize_email_canonical(v) AS canonical
FROM unnest(ARRAY[
  'John.Doe+News@Gmail.com',
  ' j.o.h.n.d.o.e@GoogleMail.com ',
  'johndoe@gmail.com',
  'John.Doe+News@Example.COM',           -- +tag dropped for every domain, dots kept
  'john.doe+a+b@example.com',            -- from the first '+'
  'j.doe@mail.gmail.com',                -- only gmail.com and googlemail.com
  'j.doe@gmail.com.example.net',
  'josé.+x@gmail.com',
  '+news@example.com',                   -- nothing left of the local part
  '...@gmail.com',
  '.+x@googlemail.com',
  'not an address',
  ''
]) v;
SELECT normalize_email_canonical(NULL) AS null_in,
       normalize_email_canonical(repeat('a.', 5000000) || '@gmail.com') IS NULL AS long_is_null;

-- ===== normalize_phone(value) ==============================================

-- International numbers: '+' or '00', any separators.
SELECT pg_temp.shown(v) AS input, normalize_phone(v) AS phone
FROM unnest(ARRAY[
  '+44 20 7946 0958',
  '0044 20 7946 0958',
  '+44 (0)20 7946 0958',                 -- the trunk 0 in parentheses is dropped
  '0044 (0) 20 7946 0958',
  '+1 (415) 555-0123',
  '+1.415.555.0123',
  '+49 30/1234567',
  E'+33\u00a01\u00a023\u00a045\u00a067\u00a089',  -- NBSP
  E'+33\u202f1\u202f23\u202f45\u202f67\u202f89',  -- narrow NBSP
  E'+81\u20133\u20131234\u20135678',              -- en dash
  E'\ufeff +55 (11) 91234-5678 \u200b',
  'tel:+1-201-555-0123',
  'TEL:0049301234567',
  '+12345678',                           -- 8 digits: the shortest accepted
  '+123456789012345'                     -- 15 digits: the longest
]) v;
-- NULL: no country code, not a number, or outside E.164.
SELECT pg_temp.shown(v) AS input, normalize_phone(v) AS phone
FROM unnest(ARRAY[
  '020 7946 0958',                       -- national: the country is unknown
  '(415) 555-0123',
  '+1234567',                            -- 7 digits
  '+1234567890123456',                   -- 16 digits
  '0044 1234 5678 9012 345',             -- 17 digits after 00
  '+0 20 7946 0958',                     -- a country code never starts with 0
  '000 44 20 7946 0958',
  '+44 20 7946 0958 ext. 12',
  '+1 415 555 0123 x12',
  '+1 800 FLOWERS',
  '++44 20 7946 0958',
  '44+20 7946 0958',
  '+44 20 7946 0958+',
  '+44 20 7946 0958#',
  '+44 ２０ 7946 0958',                   -- fullwidth digits are not digits here
  'tel:',
  '+',
  ' ( ) - . / ',
  '',
  E'\u00a0 \u3000'
]) v;
SELECT normalize_phone(NULL) AS null_in;
-- 10 MB: NULL, without reading it all (more than 128 bytes is no phone number).
SELECT normalize_phone(repeat('1', 10000000)) IS NULL AS digits_10mb,
       normalize_phone('+' || repeat(' ', 10000000) || '442079460958') IS NULL AS spaces_10mb,
       normalize_phone(repeat(' ', 5000000) || '+442079460958' || repeat(' ', 5000000)) AS padded;

-- ===== normalize_phone(value, country_code) ================================

-- National numbers: one trunk '0' dropped, the country code put before.
SELECT pg_temp.shown(v) AS input, cc, normalize_phone(v, cc) AS phone
FROM (VALUES
  ('(415) 555-0123', '1'),               -- NANP
  ('415.555.0123', '+1'),
  ('1-415-555-0123', '1'),               -- NANP trunk prefix 1
  ('011 44 20 7946 0958', '1'),          -- NANP international prefix 011
  ('020 7946 0958', '44'),               -- United Kingdom
  ('(0)20 7946 0958', '44'),
  ('07700 900123', '+44'),
  ('030 1234567', '49'),                 -- Germany
  ('0151 23456789', '49'),
  ('01 23 45 67 89', '33'),              -- France
  ('03-1234-5678', '81'),                -- Japan
  ('098765 43210', '91'),                -- India
  ('(02) 9876 5432', '61'),              -- Australia
  ('(11) 91234-5678', '55'),             -- Brazil (no trunk 0 written)
  ('06 1234 5678', '39'),                -- Italy keeps its leading 0
  ('347 123 4567', '39'),
  ('0549 123456', '378'),                -- San Marino likewise
  ('8 (495) 123-45-67', '7'),            -- Russia: trunk prefix 8
  ('(495) 123-45-67', '7'),
  ('8 800 123 45 67', '7'),
  ('800 123 45 67', '7'),
  ('06 1 234 5678', '36'),               -- Hungary: trunk prefix 06
  ('+44 20 7946 0958', '1'),             -- an international number keeps its own country
  ('0044 20 7946 0958', '33'),
  ('tel:+49-30-1234567', '44')
) t(v, cc);
-- NULL: still not a number of that country.
SELECT pg_temp.shown(v) AS input, cc, normalize_phone(v, cc) AS phone
FROM (VALUES
  ('555-0123', '1'),                     -- NANP numbers have 10 digits
  ('1 555 0123', '1'),
  ('2 415-555-0123', '1'),
  ('415 555 01234', '1'),
  ('495 123 45', '7'),
  ('0', '44'),                           -- nothing but the trunk 0
  ('0 1234 5678 9012 345', '44'),        -- 44 and 15 digits: too long
  ('0123', '44'),                        -- too short
  ('020 7946 0958 ext 1', '44'),
  ('', '44'),
  (' ', '44')
) t(v, cc);
-- STRICT: NULL in, NULL out, even with a bad country code.
SELECT normalize_phone(NULL, '44') AS null_value, normalize_phone('020 7946 0958', NULL) AS null_cc,
       normalize_phone(NULL, 'xx') AS null_value_bad_cc;
SELECT normalize_phone(repeat('0', 10000000), '44') IS NULL AS digits_10mb;
-- A bad country code is the caller's mistake: an error, not NULLs.
SELECT normalize_phone('020 7946 0958', '');
SELECT normalize_phone('020 7946 0958', '0');
SELECT normalize_phone('020 7946 0958', '+044');
SELECT normalize_phone('020 7946 0958', '1234');
SELECT normalize_phone('020 7946 0958', '+');
SELECT normalize_phone('020 7946 0958', '++44');
SELECT normalize_phone('020 7946 0958', ' 44');
SELECT normalize_phone('020 7946 0958', 'UK');
SELECT normalize_phone('+44 20 7946 0958', '4 4');
SELECT normalize_phone('020 7946 0958', repeat('9', 10000000));
SELECT normalize_phone('020 7946 0958', 'ééééééééééééééé');

-- ===== use =================================================================

-- IMMUTABLE, so they can back expression indexes and unique constraints.
CREATE TABLE contacts (id int, email text, phone text);
CREATE UNIQUE INDEX contacts_email ON contacts (normalize_email_canonical(email));
CREATE INDEX contacts_phone ON contacts (normalize_phone(phone, '44'));
INSERT INTO contacts VALUES (1, 'Jane.Roe+shop@gmail.com', '07700 900123'),
                            (2, 'j.smith@example.com', '+44 7700 900123');
-- the same mailbox as 1
INSERT INTO contacts VALUES (3, ' janeroe@googlemail.com', NULL);
SELECT id FROM contacts WHERE normalize_phone(phone, '44') = '+447700900123' ORDER BY id;
-- A user's own normalizer: any IMMUTABLE function (text) RETURNS text.
CREATE FUNCTION shop_phone(text) RETURNS text IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT personalize.normalize_phone($1, '44') $$;
SELECT shop_phone(phone) FROM contacts ORDER BY id;
DROP TABLE contacts;
DROP FUNCTION shop_phone(text);

-- ===== a database that is not UTF8 =========================================

-- Only ASCII whitespace is trimmed; LATIN1's NBSP (A0) is a character like
-- any other.  (The client writes UTF8; the server converts.)
SELECT current_database() AS regress_db \gset
CREATE DATABASE pz_normalize_latin1 ENCODING 'LATIN1' LOCALE 'C' TEMPLATE template0;
\c pz_normalize_latin1
SET client_encoding = 'UTF8';
SET client_min_messages = warning;
CREATE EXTENSION personalize;
SET search_path = personalize, public;
SELECT length(normalize_trim(E' \t\u00a0é\u00a0\n')) AS len_trim,
       normalize_email(E' José@Example.COM\n') AS email,
       normalize_email(E'\u00a0jose@example.com') = E'\u00a0jose@example.com' AS email_keeps_nbsp,
       normalize_phone('+44 20 7946 0958') AS phone,
       normalize_phone(E'+44\u00a020 7946 0958') AS phone_nbsp;
\c :regress_db
DROP DATABASE pz_normalize_latin1;
SELECT count(*) AS latin1_dropped FROM pg_database WHERE datname = 'pz_normalize_latin1';
