-- personalize 0.1.0 -> 0.2.0: identity resolution
--
-- Identifiers are (namespace, value) pairs.  Namespaces are configured
-- (priority, the most identifiers of the namespace one profile may hold, a
-- normalizer, blocked values); identifiers that events or explicit links
-- join resolve to one profile.  The identity graph lives in the tables
-- below: identities (identifier -> profile), merges (the merge log),
-- refused_links (links the merge rules refused), and profiles (one row per
-- profile, holding its trait states as one `profile` value).
--
-- CREATE EXTENSION personalize runs personalize--0.1.0.sql and then this
-- script; ALTER EXTENSION personalize UPDATE brings 0.1.0 databases here.

\echo Use "ALTER EXTENSION personalize UPDATE TO '0.2.0'" to load this file. \quit

-- ===========================================================================
-- Normalizers (src/normalize.c)
--
-- An identifier is stored as its normalizer returns it.  A normalizer takes
-- one text and returns text, or NULL when the input is not a usable value.
-- ===========================================================================

-- Each depends only on its arguments (and the email ones on the database's
-- default collation, as lower() does), so all are IMMUTABLE and may back
-- expression indexes.  docs/normalizers.md says what each accepts.
CREATE FUNCTION normalize_trim(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_normalize_trim' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION normalize_trim(text) IS
    'personalize normalizer: the value without leading and trailing whitespace (Unicode spaces, NBSP, zero-width space and BOM included in UTF8 databases); NULL if nothing is left';
CREATE FUNCTION normalize_email(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_normalize_email' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION normalize_email(text) IS
    'personalize normalizer: the email address trimmed and lowercased as lower() does; NULL if it is not an address';
CREATE FUNCTION normalize_email_canonical(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_normalize_email_canonical' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION normalize_email_canonical(text) IS
    'personalize normalizer: normalize_email without the +tag of the local part, and for gmail.com and googlemail.com without dots, as ...@gmail.com; NULL if it is not an address';
CREATE FUNCTION normalize_phone(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_normalize_phone' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION normalize_phone(text) IS
    'personalize normalizer: the phone number written with + or 00 in E.164 form (+<8 to 15 digits>); NULL for numbers without a country code and for anything else';
CREATE FUNCTION normalize_phone(value text, country_code text) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_normalize_phone_national' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION normalize_phone(text, text) IS
    'personalize normalizer: the phone number in E.164 form, reading a number without + or 00 as a national number of the country with that calling code; NULL if it is not a number';

-- (end of normalizers)


-- ===========================================================================
-- The profile type (src/profile.c)
--
-- One value holding every trait state of one profile, keyed by trait id.
-- ===========================================================================

-- (end of the profile type)


-- ===========================================================================
-- Namespaces and the identity graph (src/namespace.c, src/identity.c)
-- ===========================================================================

-- (end of namespaces and the identity graph)


-- ===========================================================================
-- Batch connected components (src/components.c)
-- ===========================================================================

-- (end of batch connected components)


-- ===========================================================================
-- Privileges
-- ===========================================================================

-- (end of privileges)
