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
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
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
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION profile_eq(profile, profile) IS 'profiles holding equal states for the same traits';
CREATE FUNCTION profile_ne(profile, profile) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
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

-- Who may do what.  Functions run with the caller's rights, so the table
-- grants below are the whole story: personalize_reader reads profiles and
-- identities (resolve, identifiers); personalize_admin also changes them
-- and the configuration (namespaces, identify, link, split, forget).  Roles
-- are cluster-wide and outlive the extension, so they are created only when
-- missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'personalize_reader') THEN
        CREATE ROLE personalize_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'personalize_admin') THEN
        CREATE ROLE personalize_admin NOLOGIN;
    END IF;
END
$$;

-- Namespaces: where identifiers come from.  Changed through the functions
-- below, which validate; a higher priority wins.
CREATE TABLE namespaces (
    id              integer PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    priority        integer NOT NULL DEFAULT 0,
    max_per_profile integer,
    normalizer      regprocedure,
    blocked         text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT namespace_name_is_plain CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT max_per_profile_is_positive CHECK (max_per_profile IS NULL OR max_per_profile > 0)
);
COMMENT ON TABLE namespaces IS
    'Identifier namespaces: priority (higher wins), the most identifiers of the namespace one profile may hold (NULL: no limit), normalizer, blocked values.';

-- The identity graph, flattened: every identifier points at its profile.
-- (namespace_id, value) is the key; the second index finds a profile's
-- identifiers, by namespace for the merge-limit counts.  Values compare by
-- bytes (COLLATE "C"), as keys are chosen, and whatever the database's
-- locale: identifiers are not words, and byte comparison is the fastest.
CREATE TABLE identities (
    profile_id   bigint NOT NULL,
    namespace_id integer NOT NULL,
    value        text COLLATE "C" NOT NULL,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace_id, value)
);
CREATE INDEX identities_profile_idx ON identities (profile_id, namespace_id);
COMMENT ON TABLE identities IS
    'Identifier (namespace, normalized value) -> profile.  Written by identify, link, split and forget.';

-- One row per profile.  A profile is keyed by its best identifier (highest
-- namespace priority, then namespace name, then smallest value) and its id
-- is derived from that identifier, so the same links in any order give the
-- same ids.
CREATE TABLE profiles (
    id               bigint PRIMARY KEY,
    key_namespace_id integer NOT NULL,
    key_value        text COLLATE "C" NOT NULL,
    states           profile NOT NULL DEFAULT '{}',
    first_seen       timestamptz,
    last_seen        timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    rebuild_pending  boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE profiles IS
    'One row per profile: its key identifier, trait states, first and last event time.  rebuild_pending: a split left states that must be rebuilt from the sources.';

-- The merge log: every change of a profile id, with the link that caused it.
CREATE TABLE merge_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at     timestamptz NOT NULL DEFAULT now(),
    action        text NOT NULL CHECK (action IN ('merge', 'rekey', 'split')),
    from_profile  bigint NOT NULL,
    into_profile  bigint NOT NULL,
    namespace_a   text,
    value_a       text,
    namespace_b   text,
    value_b       text
);
CREATE INDEX merge_log_into_idx ON merge_log (into_profile);
CREATE INDEX merge_log_from_idx ON merge_log (from_profile);
COMMENT ON TABLE merge_log IS
    'merge: from_profile was merged into into_profile because identifiers a and b were linked; rekey: the profile got a better key identifier (a) and so a new id; split: identifier a was split off from_profile into into_profile.';

-- Links the merge rules refused, once per pair of identifiers.
CREATE TABLE refused_links (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_refused_at timestamptz NOT NULL DEFAULT now(),
    last_refused_at  timestamptz NOT NULL DEFAULT now(),
    times            bigint NOT NULL DEFAULT 1,
    rule             text NOT NULL CHECK (rule IN ('limit', 'blocked')),
    rule_namespace   text NOT NULL,
    namespace_a      text NOT NULL,
    value_a          text NOT NULL,
    namespace_b      text NOT NULL,
    value_b          text NOT NULL,
    profile_a        bigint,
    profile_b        bigint,
    UNIQUE (namespace_a, value_a, namespace_b, value_b)
);
COMMENT ON TABLE refused_links IS
    'Links refused by a merge rule: limit (joining would give a profile more identifiers of rule_namespace than it may hold) or blocked (a value of rule_namespace is blocked).  a is the identifier the event was attributed to.';

-- pg_dump dumps the rows of configuration tables (and their sequences).
SELECT pg_catalog.pg_extension_config_dump('namespaces', '');
SELECT pg_catalog.pg_extension_config_dump('identities', '');
SELECT pg_catalog.pg_extension_config_dump('profiles', '');
SELECT pg_catalog.pg_extension_config_dump('merge_log', '');
SELECT pg_catalog.pg_extension_config_dump('merge_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('refused_links', '');
SELECT pg_catalog.pg_extension_config_dump('refused_links_id_seq', '');

-- Caches in front of these tables learn of changes made outside the
-- identity functions (and of configuration changes) through these triggers.
CREATE FUNCTION identity_graph_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'pz_identity_graph_changed' LANGUAGE C;
CREATE TRIGGER namespaces_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON namespaces
    FOR EACH STATEMENT EXECUTE FUNCTION identity_graph_changed();
CREATE TRIGGER identities_changed AFTER UPDATE OR DELETE OR TRUNCATE ON identities
    FOR EACH STATEMENT EXECUTE FUNCTION identity_graph_changed();
-- also under session_replication_role = replica (logical replication apply,
-- pg_restore --disable-triggers): caches must hear of every change
ALTER TABLE namespaces ENABLE ALWAYS TRIGGER namespaces_changed;
ALTER TABLE identities ENABLE ALWAYS TRIGGER identities_changed;

-- Configuration
CREATE FUNCTION create_namespace(name text, priority integer DEFAULT 0,
                                 max_per_profile integer DEFAULT NULL,
                                 normalizer regprocedure DEFAULT NULL,
                                 blocked text[] DEFAULT '{}') RETURNS void
    AS 'MODULE_PATHNAME', 'pz_create_namespace' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION create_namespace(text, integer, integer, regprocedure, text[]) IS
    'Create an identifier namespace.  max_per_profile NULL: no limit.  normalizer: an IMMUTABLE function (text) RETURNS text.  blocked: values that never link (stored normalized).';

CREATE FUNCTION alter_namespace(name text, priority integer DEFAULT NULL,
                                max_per_profile integer DEFAULT NULL,
                                remove_limit boolean DEFAULT false) RETURNS void
    AS 'MODULE_PATHNAME', 'pz_alter_namespace' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION alter_namespace(text, integer, integer, boolean) IS
    'Change a namespace''s priority or limit (NULL: unchanged; remove_limit => true: no limit).  Existing profiles are not re-checked.';

CREATE FUNCTION drop_namespace(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'pz_drop_namespace' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION drop_namespace(text) IS
    'Drop a namespace that holds no identifiers (forget them first).';

CREATE FUNCTION block_value(namespace text, value text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_block_value' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION block_value(text, text) IS
    'Block a value (normalized first) of a namespace: it will never link anything.  Returns false if it was already blocked.  Existing links are kept: split or forget them.';

CREATE FUNCTION unblock_value(namespace text, value text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_unblock_value' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION unblock_value(text, text) IS
    'Remove a value from a namespace''s blocked values.  Returns false if it was not blocked.';

CREATE FUNCTION normalize_identifier(namespace text, value text) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_normalize' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION normalize_identifier(text, text) IS
    'The value as the namespace stores it (its normalizer applied), or NULL if it is not usable (empty, not valid for the normalizer, or blocked).';

-- The identity graph
CREATE FUNCTION resolve(namespace text, value text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'pz_resolve' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION resolve(text, text) IS
    'The profile id of an identifier, or NULL if it has never been seen.';

CREATE FUNCTION identify(namespace text, value text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'pz_identify' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION identify(text, text) IS
    'The profile id of an identifier, creating the profile if the identifier is new.';

CREATE FUNCTION identify(identifiers jsonb) RETURNS bigint
    AS 'MODULE_PATHNAME', 'pz_identify_event' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION identify(jsonb) IS
    'The identifiers one event carries, as {"namespace": "value", ...}: links them under the merge rules and returns the profile the event is attributed to (that of its highest-priority usable identifier).';

CREATE FUNCTION link(namespace_a text, value_a text, namespace_b text, value_b text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_link' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION link(text, text, text, text) IS
    'Link two identifiers: true if they now resolve to one profile, false if a merge rule refused the link (see refused_links).';

CREATE FUNCTION split(namespace text, value text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'pz_split' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION split(text, text) IS
    'Move an identifier out of its profile into a profile of its own; returns its new profile id.  Both profiles are marked rebuild_pending.';

-- forget's optional list of source columns: rows of relation whose
-- column_name, normalized as namespace, is one of the forgotten identifiers
-- are deleted too.
CREATE TYPE source_column AS (relation regclass, column_name name, namespace text);

CREATE FUNCTION forget(namespace text, value text, source_columns source_column[] DEFAULT '{}')
    RETURNS TABLE (relation text, removed bigint)
    AS 'MODULE_PATHNAME', 'pz_forget' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION forget(text, text, source_column[]) IS
    'Right to erasure: delete the profile of an identifier with all its identifiers, its merge-log and refused-link entries, and the rows of the given source columns that hold any of its identifiers; returns what was removed, per table.';

CREATE FUNCTION identifiers(profile_id bigint)
    RETURNS TABLE (namespace text, value text, first_seen timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT n.name, i.value, i.first_seen
          FROM personalize.identities i JOIN personalize.namespaces n ON n.id = i.namespace_id
         WHERE i.profile_id = identifiers.profile_id
         ORDER BY n.priority DESC, n.name, i.value COLLATE "C";
    END;
COMMENT ON FUNCTION identifiers(bigint) IS
    'The identifiers of a profile, best first.';

-- (end of namespaces and the identity graph)


-- ===========================================================================
-- Batch connected components (src/components.c)
-- ===========================================================================

-- Identity resolution of historical data in one pass: the connected
-- components of any edge set, by an in-memory union-find bounded by
-- personalize.components_memory_limit.
CREATE FUNCTION connected_components(edges text)
    RETURNS TABLE (identifier text, component text)
    AS 'MODULE_PATHNAME', 'pz_connected_components' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION connected_components(text) IS
    'Connected components of the edges a query returns (two columns, any types, read as text; a NULL end adds the other end alone): one row per identifier with its component, named by the component''s smallest identifier in byte order.';


-- (end of batch connected components)


-- ===========================================================================
-- Privileges
-- ===========================================================================

-- The types, aggregates and functions are for everyone (CREATE EXTENSION
-- makes the schema, which PUBLIC cannot otherwise use); the identity graph
-- holds personal data: nobody reads it without a grant.
GRANT USAGE ON SCHEMA personalize TO PUBLIC;
REVOKE ALL ON namespaces, identities, profiles, merge_log, refused_links FROM PUBLIC;
GRANT SELECT ON namespaces, identities, profiles, merge_log, refused_links TO personalize_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON namespaces, identities, profiles, merge_log, refused_links
    TO personalize_admin;
GRANT USAGE ON SEQUENCE merge_log_id_seq, refused_links_id_seq TO personalize_admin;
GRANT personalize_reader TO personalize_admin;


-- (end of privileges)
