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
