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

-- (end of normalizers)


-- ===========================================================================
-- The profile type (src/profile.c)
--
-- One value holding every trait state of one profile, keyed by trait id.
-- ===========================================================================

-- Text form: a JSON object from trait id to {"<kind>": <the state's text>},
-- e.g. {"3": {"last": {"value": "gold", "time": "2026-03-01 00:00:00+00"}}};
-- '{}' is the empty profile.  Binary form: see docs/trait-states.md.
-- NULL is the empty profile for merges (profile_merge(p, NULL) = p).
CREATE TYPE profile;
CREATE FUNCTION profile_in(cstring, oid, integer) RETURNS profile
    AS 'MODULE_PATHNAME', 'pz_profile_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION profile_out(profile) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_profile_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION profile_recv(internal, oid, integer) RETURNS profile
    AS 'MODULE_PATHNAME', 'pz_profile_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION profile_send(profile) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_profile_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE profile (
    INPUT = profile_in, OUTPUT = profile_out, RECEIVE = profile_recv, SEND = profile_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE profile IS 'personalize profile: the trait states of one shopper, keyed by trait id';
COMMENT ON FUNCTION profile_in(cstring, oid, integer) IS 'text input of profile (STABLE: times without an offset are read in TimeZone)';
COMMENT ON FUNCTION profile_out(profile) IS 'text output of profile: a JSON object, times in UTC';
COMMENT ON FUNCTION profile_recv(internal, oid, integer) IS 'binary input of profile: validates every state';
COMMENT ON FUNCTION profile_send(profile) IS 'binary output of profile: its flat form';

CREATE FUNCTION profile_merge(profile, profile) RETURNS profile
    AS 'MODULE_PATHNAME', 'pz_profile_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION profile_merge(profile, profile) IS 'merge two profiles trait by trait (each trait''s states must be of one kind); NULL is the empty profile';
CREATE OPERATOR || (LEFTARG = profile, RIGHTARG = profile, FUNCTION = profile_merge);
COMMENT ON OPERATOR || (profile, profile) IS 'merge two profiles trait by trait';
CREATE FUNCTION profile_eq(profile, profile) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_profile_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION profile_eq(profile, profile) IS 'profiles holding equal states for the same traits';
CREATE FUNCTION profile_ne(profile, profile) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_profile_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION profile_ne(profile, profile) IS 'profiles that differ in a trait or a state';
CREATE OPERATOR = (LEFTARG = profile, RIGHTARG = profile, FUNCTION = profile_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
COMMENT ON OPERATOR = (profile, profile) IS 'profiles holding equal states for the same traits';
CREATE OPERATOR <> (LEFTARG = profile, RIGHTARG = profile, FUNCTION = profile_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
COMMENT ON OPERATOR <> (profile, profile) IS 'profiles that differ in a trait or a state';

-- merge_agg(profile): the merge of all non-NULL profiles (NULL if none)
CREATE FUNCTION profile_merge_trans(internal, profile) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_profile_merge_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION profile_merge_trans(internal, profile) IS 'transition function of merge_agg(profile)';
CREATE FUNCTION profile_agg_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_profile_agg_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION profile_agg_combine(internal, internal) IS 'combine function of merge_agg(profile)';
CREATE FUNCTION profile_agg_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_profile_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION profile_agg_serialize(internal) IS 'serialize function of merge_agg(profile)';
CREATE FUNCTION profile_agg_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_profile_agg_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION profile_agg_deserialize(bytea, internal) IS 'deserialize function of merge_agg(profile)';
CREATE FUNCTION profile_agg_final(internal) RETURNS profile
    AS 'MODULE_PATHNAME', 'pz_profile_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION profile_agg_final(internal) IS 'final function of merge_agg(profile)';
CREATE AGGREGATE merge_agg(profile) (
    SFUNC = profile_merge_trans, STYPE = internal, FINALFUNC = profile_agg_final, SSPACE = 1024,
    COMBINEFUNC = profile_agg_combine, SERIALFUNC = profile_agg_serialize,
    DESERIALFUNC = profile_agg_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg(profile) IS 'merge of the profiles, trait by trait; NULL inputs are skipped';

-- Reading and writing one trait.  The state type of profile_set's and
-- profile_get's third argument names the kind:
--   profile_get(p, 3, NULL::personalize.recent_state)
CREATE FUNCTION profile_set(p profile, trait integer, state anyelement) RETURNS profile
    AS 'MODULE_PATHNAME', 'pz_profile_set' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION profile_set(profile, integer, anyelement) IS 'the profile with the trait''s state replaced by state (of any kind); a NULL state removes the trait, a NULL profile is empty';
CREATE FUNCTION profile_get(p profile, trait integer, kind anyelement) RETURNS anyelement
    AS 'MODULE_PATHNAME', 'pz_profile_get' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION profile_get(profile, integer, anyelement) IS 'the trait''s state, of the type of kind (pass e.g. NULL::personalize.recent_state); NULL if the profile holds none';
CREATE FUNCTION profile_traits(p profile) RETURNS integer[]
    AS 'MODULE_PATHNAME', 'pz_profile_traits' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION profile_traits(profile) IS 'the ids of the traits the profile holds, ascending';
CREATE FUNCTION profile_remove(p profile, trait integer) RETURNS profile
    AS 'MODULE_PATHNAME', 'pz_profile_remove' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION profile_remove(profile, integer) IS 'the profile without the trait';

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
