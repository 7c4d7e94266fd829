-- personalize 0.10.0: the whole extension in one script
--
-- CREATE EXTENSION personalize runs this file.  A database created at an
-- earlier version reaches the same objects through the upgrade scripts
-- personalize--<from>--<to>.sql (ALTER EXTENSION personalize UPDATE);
-- test/t/004_upgrade.pl checks that both give the same schema.  Sections:
-- trait states, identity resolution, sources/traits/profiles, streaming,
-- the wait that holds no snapshot, trust boundaries, audiences (0.8.0:
-- Citus tables are refused as sources, docs/scale-out.md).
--
-- ###########################################################################
-- Trait states (since 0.1.0)
-- ###########################################################################
--
--
-- Trait states: one SQL type per kind of trait, each with text and binary
-- I/O, a merge function and || operator, accessors, an aggregate that builds
-- the state from event rows, and merge_agg that folds stored states.  Every
-- aggregate has combine, serialize and deserialize functions and is
-- PARALLEL SAFE.  Values are held as text; bigint arguments are held as their
-- decimal text, so read them back with a cast (recent_values(s)::bigint[]).
--
-- SSPACE tells the planner the typical in-memory size of a state per group,
-- so it sizes hash aggregates right (or chooses to sort) for many shoppers.
--
-- NULL rules: an event row whose value or time is NULL is skipped; an
-- aggregate over no usable rows is NULL; NULL is the empty state for merges
-- (state_merge(s, NULL) = s).
--
-- Text input is STABLE: a time written without an offset is read in the
-- session's TimeZone.  Output always writes UTC with "+00", so it is
-- IMMUTABLE and what it writes reads back the same anywhere.

\echo Use "CREATE EXTENSION personalize" to load this file. \quit

-- Aggregate support shared by every kind: the state's kind travels with it.
CREATE FUNCTION trait_state_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_agg_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION trait_state_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION trait_state_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_agg_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;


-- recent_state: the N most recent distinct values with their times
CREATE TYPE recent_state;
CREATE FUNCTION recent_state_in(cstring, oid, integer) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION recent_state_out(recent_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION recent_state_recv(internal, oid, integer) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION recent_state_send(recent_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE recent_state (
    INPUT = recent_state_in, OUTPUT = recent_state_out, RECEIVE = recent_state_recv, SEND = recent_state_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE recent_state IS 'personalize trait state: the N most recent distinct values with their times';
CREATE FUNCTION state_merge(recent_state, recent_state) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_state_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE OPERATOR || (LEFTARG = recent_state, RIGHTARG = recent_state, FUNCTION = state_merge);
CREATE FUNCTION state_eq(recent_state, recent_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION state_ne(recent_state, recent_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (LEFTARG = recent_state, RIGHTARG = recent_state, FUNCTION = state_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR <> (LEFTARG = recent_state, RIGHTARG = recent_state, FUNCTION = state_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE FUNCTION recent_state_final(internal) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION recent_state_merge_trans(internal, recent_state) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_merge_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE merge_agg(recent_state) (
    SFUNC = recent_state_merge_trans, STYPE = internal, FINALFUNC = recent_state_final, SSPACE = 512,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);

-- top_state: per-value weights decayed by a half-life, the N heaviest kept
CREATE TYPE top_state;
CREATE FUNCTION top_state_in(cstring, oid, integer) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION top_state_out(top_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION top_state_recv(internal, oid, integer) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION top_state_send(top_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE top_state (
    INPUT = top_state_in, OUTPUT = top_state_out, RECEIVE = top_state_recv, SEND = top_state_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE top_state IS 'personalize trait state: per-value weights decayed by a half-life, the N heaviest kept';
CREATE FUNCTION state_merge(top_state, top_state) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_state_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE OPERATOR || (LEFTARG = top_state, RIGHTARG = top_state, FUNCTION = state_merge);
CREATE FUNCTION state_eq(top_state, top_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION state_ne(top_state, top_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (LEFTARG = top_state, RIGHTARG = top_state, FUNCTION = state_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR <> (LEFTARG = top_state, RIGHTARG = top_state, FUNCTION = state_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE FUNCTION top_state_final(internal) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION top_state_merge_trans(internal, top_state) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_merge_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE merge_agg(top_state) (
    SFUNC = top_state_merge_trans, STYPE = internal, FINALFUNC = top_state_final, SSPACE = 512,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);

-- windowed_state: event counts and sums in time buckets, read over any window at read time
CREATE TYPE windowed_state;
CREATE FUNCTION windowed_state_in(cstring, oid, integer) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_state_out(windowed_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_state_recv(internal, oid, integer) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_state_send(windowed_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE windowed_state (
    INPUT = windowed_state_in, OUTPUT = windowed_state_out, RECEIVE = windowed_state_recv, SEND = windowed_state_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE windowed_state IS 'personalize trait state: event counts and sums in time buckets, read over any window at read time';
CREATE FUNCTION state_merge(windowed_state, windowed_state) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_state_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE OPERATOR || (LEFTARG = windowed_state, RIGHTARG = windowed_state, FUNCTION = state_merge);
CREATE FUNCTION state_eq(windowed_state, windowed_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION state_ne(windowed_state, windowed_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (LEFTARG = windowed_state, RIGHTARG = windowed_state, FUNCTION = state_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR <> (LEFTARG = windowed_state, RIGHTARG = windowed_state, FUNCTION = state_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE FUNCTION windowed_state_final(internal) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_state_merge_trans(internal, windowed_state) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_merge_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE merge_agg(windowed_state) (
    SFUNC = windowed_state_merge_trans, STYPE = internal, FINALFUNC = windowed_state_final, SSPACE = 384,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);

-- distinct_state: HyperLogLog sketch for approximate distinct counts
CREATE TYPE distinct_state;
CREATE FUNCTION distinct_state_in(cstring, oid, integer) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION distinct_state_out(distinct_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION distinct_state_recv(internal, oid, integer) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION distinct_state_send(distinct_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE distinct_state (
    INPUT = distinct_state_in, OUTPUT = distinct_state_out, RECEIVE = distinct_state_recv, SEND = distinct_state_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE distinct_state IS 'personalize trait state: HyperLogLog sketch for approximate distinct counts';
CREATE FUNCTION state_merge(distinct_state, distinct_state) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_state_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE OPERATOR || (LEFTARG = distinct_state, RIGHTARG = distinct_state, FUNCTION = state_merge);
CREATE FUNCTION state_eq(distinct_state, distinct_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION state_ne(distinct_state, distinct_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (LEFTARG = distinct_state, RIGHTARG = distinct_state, FUNCTION = state_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR <> (LEFTARG = distinct_state, RIGHTARG = distinct_state, FUNCTION = state_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE FUNCTION distinct_state_final(internal) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION distinct_state_merge_trans(internal, distinct_state) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_merge_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE merge_agg(distinct_state) (
    SFUNC = distinct_state_merge_trans, STYPE = internal, FINALFUNC = distinct_state_final, SSPACE = 160,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);

-- first_state: the value of the earliest event by event time
CREATE TYPE first_state;
CREATE FUNCTION first_state_in(cstring, oid, integer) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION first_state_out(first_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION first_state_recv(internal, oid, integer) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION first_state_send(first_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE first_state (
    INPUT = first_state_in, OUTPUT = first_state_out, RECEIVE = first_state_recv, SEND = first_state_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE first_state IS 'personalize trait state: the value of the earliest event by event time';
CREATE FUNCTION state_merge(first_state, first_state) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_state_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE OPERATOR || (LEFTARG = first_state, RIGHTARG = first_state, FUNCTION = state_merge);
CREATE FUNCTION state_eq(first_state, first_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION state_ne(first_state, first_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (LEFTARG = first_state, RIGHTARG = first_state, FUNCTION = state_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR <> (LEFTARG = first_state, RIGHTARG = first_state, FUNCTION = state_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE FUNCTION first_state_final(internal) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION first_state_merge_trans(internal, first_state) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_merge_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE merge_agg(first_state) (
    SFUNC = first_state_merge_trans, STYPE = internal, FINALFUNC = first_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);

-- last_state: the value of the latest event by event time
CREATE TYPE last_state;
CREATE FUNCTION last_state_in(cstring, oid, integer) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION last_state_out(last_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION last_state_recv(internal, oid, integer) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION last_state_send(last_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE last_state (
    INPUT = last_state_in, OUTPUT = last_state_out, RECEIVE = last_state_recv, SEND = last_state_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE last_state IS 'personalize trait state: the value of the latest event by event time';
CREATE FUNCTION state_merge(last_state, last_state) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_state_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE OPERATOR || (LEFTARG = last_state, RIGHTARG = last_state, FUNCTION = state_merge);
CREATE FUNCTION state_eq(last_state, last_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION state_ne(last_state, last_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (LEFTARG = last_state, RIGHTARG = last_state, FUNCTION = state_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR <> (LEFTARG = last_state, RIGHTARG = last_state, FUNCTION = state_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE FUNCTION last_state_final(internal) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION last_state_merge_trans(internal, last_state) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_merge_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE merge_agg(last_state) (
    SFUNC = last_state_merge_trans, STYPE = internal, FINALFUNC = last_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);

-- session_state: the current session (inactivity gap): start, last activity, events, dominant category, last item
CREATE TYPE session_state;
CREATE FUNCTION session_state_in(cstring, oid, integer) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_state_out(session_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_state_recv(internal, oid, integer) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_state_send(session_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE session_state (
    INPUT = session_state_in, OUTPUT = session_state_out, RECEIVE = session_state_recv, SEND = session_state_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE session_state IS 'personalize trait state: the current session (inactivity gap): start, last activity, events, dominant category, last item';
CREATE FUNCTION state_merge(session_state, session_state) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_state_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE OPERATOR || (LEFTARG = session_state, RIGHTARG = session_state, FUNCTION = state_merge);
CREATE FUNCTION state_eq(session_state, session_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION state_ne(session_state, session_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR = (LEFTARG = session_state, RIGHTARG = session_state, FUNCTION = state_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
CREATE OPERATOR <> (LEFTARG = session_state, RIGHTARG = session_state, FUNCTION = state_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE FUNCTION session_state_final(internal) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_state_merge_trans(internal, session_state) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_merge_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE merge_agg(session_state) (
    SFUNC = session_state_merge_trans, STYPE = internal, FINALFUNC = session_state_final, SSPACE = 320,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);

-- recent(N) ---------------------------------------------------------------
CREATE FUNCTION recent_agg_trans(internal, value text, ts timestamptz, n integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'recent_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE recent_agg(value text, ts timestamptz, n integer) (
    SFUNC = recent_agg_trans, STYPE = internal, FINALFUNC = recent_state_final, SSPACE = 512,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION recent_agg_trans(internal, value bigint, ts timestamptz, n integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'recent_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE recent_agg(value bigint, ts timestamptz, n integer) (
    SFUNC = recent_agg_trans, STYPE = internal, FINALFUNC = recent_state_final, SSPACE = 512,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION recent_values(recent_state) RETURNS text[]
    AS 'MODULE_PATHNAME', 'recent_values' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION recent_times(recent_state) RETURNS timestamptz[]
    AS 'MODULE_PATHNAME', 'recent_times' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION recent_size(recent_state) RETURNS integer
    AS 'MODULE_PATHNAME', 'recent_size' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION recent_items(recent_state, OUT value text, OUT ts timestamptz)
    RETURNS SETOF record
    AS $$ SELECT * FROM unnest(recent_values($1), recent_times($1)) $$
    LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE;

-- top(N, half-life) -------------------------------------------------------
CREATE FUNCTION top_agg_trans(internal, value text, ts timestamptz, n integer, half_life interval) RETURNS internal
    AS 'MODULE_PATHNAME', 'top_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE top_agg(value text, ts timestamptz, n integer, half_life interval) (
    SFUNC = top_agg_trans, STYPE = internal, FINALFUNC = top_state_final, SSPACE = 512,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION top_agg_trans(internal, value text, ts timestamptz, n integer, half_life interval, weight float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'top_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE top_agg(value text, ts timestamptz, n integer, half_life interval, weight float8) (
    SFUNC = top_agg_trans, STYPE = internal, FINALFUNC = top_state_final, SSPACE = 512,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION top_agg_trans(internal, value bigint, ts timestamptz, n integer, half_life interval) RETURNS internal
    AS 'MODULE_PATHNAME', 'top_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE top_agg(value bigint, ts timestamptz, n integer, half_life interval) (
    SFUNC = top_agg_trans, STYPE = internal, FINALFUNC = top_state_final, SSPACE = 512,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION top_agg_trans(internal, value bigint, ts timestamptz, n integer, half_life interval, weight float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'top_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE top_agg(value bigint, ts timestamptz, n integer, half_life interval, weight float8) (
    SFUNC = top_agg_trans, STYPE = internal, FINALFUNC = top_state_final, SSPACE = 512,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION top_values(top_state) RETURNS text[]
    AS 'MODULE_PATHNAME', 'top_values' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION top_values(top_state, k integer) RETURNS text[]
    AS 'MODULE_PATHNAME', 'top_values' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION top_weights(top_state) RETURNS float8[]
    AS 'MODULE_PATHNAME', 'top_weights' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION top_weights(top_state, at timestamptz) RETURNS float8[]
    AS 'MODULE_PATHNAME', 'top_weights' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION top_items(top_state, OUT value text, OUT weight float8)
    RETURNS SETOF record
    AS $$ SELECT * FROM unnest(top_values($1), top_weights($1)) $$
    LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE;

-- windowed count / sum ----------------------------------------------------
CREATE FUNCTION windowed_agg_trans(internal, ts timestamptz) RETURNS internal
    AS 'MODULE_PATHNAME', 'windowed_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE windowed_agg(ts timestamptz) (
    SFUNC = windowed_agg_trans, STYPE = internal, FINALFUNC = windowed_state_final, SSPACE = 384,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION windowed_agg_trans(internal, ts timestamptz, value float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'windowed_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE windowed_agg(ts timestamptz, value float8) (
    SFUNC = windowed_agg_trans, STYPE = internal, FINALFUNC = windowed_state_final, SSPACE = 384,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION windowed_count(windowed_state, span interval) RETURNS bigint
    AS 'MODULE_PATHNAME', 'windowed_count' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_count(windowed_state, span interval, at timestamptz) RETURNS bigint
    AS 'MODULE_PATHNAME', 'windowed_count' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_sum(windowed_state, span interval) RETURNS float8
    AS 'MODULE_PATHNAME', 'windowed_sum' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_sum(windowed_state, span interval, at timestamptz) RETURNS float8
    AS 'MODULE_PATHNAME', 'windowed_sum' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_total_count(windowed_state) RETURNS bigint
    AS 'MODULE_PATHNAME', 'windowed_total_count' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_total_sum(windowed_state) RETURNS float8
    AS 'MODULE_PATHNAME', 'windowed_total_sum' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION windowed_latest(windowed_state) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'windowed_latest' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- distinct count (HyperLogLog) --------------------------------------------
CREATE FUNCTION distinct_agg_trans(internal, value text) RETURNS internal
    AS 'MODULE_PATHNAME', 'distinct_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE distinct_agg(value text) (
    SFUNC = distinct_agg_trans, STYPE = internal, FINALFUNC = distinct_state_final, SSPACE = 160,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION distinct_agg_trans(internal, value text, p integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'distinct_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE distinct_agg(value text, p integer) (
    SFUNC = distinct_agg_trans, STYPE = internal, FINALFUNC = distinct_state_final, SSPACE = 160,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION distinct_agg_trans(internal, value bigint) RETURNS internal
    AS 'MODULE_PATHNAME', 'distinct_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE distinct_agg(value bigint) (
    SFUNC = distinct_agg_trans, STYPE = internal, FINALFUNC = distinct_state_final, SSPACE = 160,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION distinct_agg_trans(internal, value bigint, p integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'distinct_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE distinct_agg(value bigint, p integer) (
    SFUNC = distinct_agg_trans, STYPE = internal, FINALFUNC = distinct_state_final, SSPACE = 160,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION distinct_count(distinct_state) RETURNS bigint
    AS 'MODULE_PATHNAME', 'distinct_count' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION distinct_precision(distinct_state) RETURNS integer
    AS 'MODULE_PATHNAME', 'distinct_precision' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- first / last by event time ----------------------------------------------
CREATE FUNCTION first_agg_trans(internal, value text, ts timestamptz) RETURNS internal
    AS 'MODULE_PATHNAME', 'first_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE first_agg(value text, ts timestamptz) (
    SFUNC = first_agg_trans, STYPE = internal, FINALFUNC = first_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION last_agg_trans(internal, value text, ts timestamptz) RETURNS internal
    AS 'MODULE_PATHNAME', 'last_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE last_agg(value text, ts timestamptz) (
    SFUNC = last_agg_trans, STYPE = internal, FINALFUNC = last_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION first_agg_trans(internal, value bigint, ts timestamptz) RETURNS internal
    AS 'MODULE_PATHNAME', 'first_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE first_agg(value bigint, ts timestamptz) (
    SFUNC = first_agg_trans, STYPE = internal, FINALFUNC = first_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION last_agg_trans(internal, value bigint, ts timestamptz) RETURNS internal
    AS 'MODULE_PATHNAME', 'last_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE last_agg(value bigint, ts timestamptz) (
    SFUNC = last_agg_trans, STYPE = internal, FINALFUNC = last_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION event_value(first_state) RETURNS text
    AS 'MODULE_PATHNAME', 'timed_value_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION event_time(first_state) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'timed_value_time' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION event_value(last_state) RETURNS text
    AS 'MODULE_PATHNAME', 'timed_value_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION event_time(last_state) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'timed_value_time' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- session -----------------------------------------------------------------
CREATE FUNCTION session_agg_trans(internal, ts timestamptz, category text, item text) RETURNS internal
    AS 'MODULE_PATHNAME', 'session_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE session_agg(ts timestamptz, category text, item text) (
    SFUNC = session_agg_trans, STYPE = internal, FINALFUNC = session_state_final, SSPACE = 320,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION session_agg_trans(internal, ts timestamptz, category text, item text, gap interval) RETURNS internal
    AS 'MODULE_PATHNAME', 'session_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE session_agg(ts timestamptz, category text, item text, gap interval) (
    SFUNC = session_agg_trans, STYPE = internal, FINALFUNC = session_state_final, SSPACE = 320,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
CREATE FUNCTION session_start(session_state) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'session_start' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_last_activity(session_state) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'session_last_activity' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_events(session_state) RETURNS bigint
    AS 'MODULE_PATHNAME', 'session_events' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_dominant_category(session_state) RETURNS text
    AS 'MODULE_PATHNAME', 'session_dominant_category' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_last_item(session_state) RETURNS text
    AS 'MODULE_PATHNAME', 'session_last_item' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_info(session_state) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'session_info' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION session_duration(session_state) RETURNS interval
    AS $$ SELECT session_last_activity($1) - session_start($1) $$
    LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE;

-- ###########################################################################
-- Identity resolution (since 0.2.0)
-- ###########################################################################
--
-- Identifiers are (namespace, value) pairs.  Namespaces are configured
-- (priority, the most identifiers of the namespace one profile may hold, a
-- normalizer, blocked values); identifiers that events or explicit links
-- join resolve to one profile.  The identity graph lives in the tables
-- below: identities (identifier -> profile), merges (the merge log),
-- refused_links (links the merge rules refused), and profiles (one row per
-- profile, holding its trait states as one `profile` value).


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
    owner           regrole NOT NULL,
    CONSTRAINT namespace_name_is_plain CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT max_per_profile_is_positive CHECK (max_per_profile IS NULL OR max_per_profile > 0)
);
COMMENT ON TABLE namespaces IS
    'Identifier namespaces: priority (higher wins), the most identifiers of the namespace one profile may hold (NULL: no limit), normalizer, blocked values.';
COMMENT ON COLUMN namespaces.owner IS
    'The role that created the namespace: its normalizer runs with this role''s rights, never more.';

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
)
-- room on each page for the row's next version: the stream rewrites a
-- profile at every batch, and an update that finds no room on its page
-- also inserts into the primary key (15 % of the worker's time at 100)
WITH (fillfactor = 70);
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
GRANT SELECT ON namespaces TO personalize_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON identities, profiles, merge_log, refused_links
    TO personalize_admin;
GRANT USAGE ON SEQUENCE merge_log_id_seq, refused_links_id_seq TO personalize_admin;
GRANT personalize_reader TO personalize_admin;


-- (end of privileges)

-- ###########################################################################
-- Sources, traits and profiles (since 0.3.0)
-- ###########################################################################
--
-- A source is a table the shop already has, registered with a mapping: which
-- columns hold which identifier namespaces, the event-time column, the event
-- type (a column or a constant) and named fields (a column, or a key of a
-- jsonb column).  A trait is a named attribute of every profile, built from
-- the sources' events by one trait-state kind.  Profiles live in
-- personalize.profiles (0.2.0); personalize.profile_view shows them with one
-- typed column per trait and is regenerated whenever traits change.
--
-- Batch rebuild goes through identity resolution (identify() for every
-- identifier the graph has not seen, in event-time order) and then the
-- trait aggregates, GROUP BY profile, in one statement per rebuild that
-- PostgreSQL may run in parallel.  The streaming worker folds events with
-- the same C code the aggregates' transition functions use.


-- metric_state: exact count, sum, min or max of numeric event values (src/metric.c)
CREATE TYPE metric_state;
CREATE FUNCTION metric_state_in(cstring, oid, integer) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION metric_state_out(metric_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pz_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION metric_state_recv(internal, oid, integer) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION metric_state_send(metric_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pz_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE metric_state (
    INPUT = metric_state_in, OUTPUT = metric_state_out, RECEIVE = metric_state_recv, SEND = metric_state_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON FUNCTION metric_state_in(cstring, oid, integer) IS 'metric_state text input: {"op": "sum", "count": 3, "value": "12.50"}';
COMMENT ON FUNCTION metric_state_out(metric_state) IS 'metric_state text output';
COMMENT ON FUNCTION metric_state_recv(internal, oid, integer) IS 'metric_state binary input';
COMMENT ON FUNCTION metric_state_send(metric_state) IS 'metric_state binary output';
COMMENT ON TYPE metric_state IS 'personalize trait state: exact count, sum, min or max of numeric event values, with the event count';
CREATE FUNCTION state_merge(metric_state, metric_state) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_state_merge' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION state_merge(metric_state, metric_state) IS 'merge two metric states of one op: counts and sums add, min and max take the smaller and larger; NULL is the empty state';
CREATE OPERATOR || (LEFTARG = metric_state, RIGHTARG = metric_state, FUNCTION = state_merge);
COMMENT ON OPERATOR || (metric_state, metric_state) IS 'merge two metric states (state_merge)';
CREATE FUNCTION state_eq(metric_state, metric_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION state_eq(metric_state, metric_state) IS 'equality of metric states (same op, count and value as written)';
CREATE FUNCTION state_ne(metric_state, metric_state) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_state_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION state_ne(metric_state, metric_state) IS 'inequality of metric states';
CREATE OPERATOR = (LEFTARG = metric_state, RIGHTARG = metric_state, FUNCTION = state_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
COMMENT ON OPERATOR = (metric_state, metric_state) IS 'equality of metric states';
CREATE OPERATOR <> (LEFTARG = metric_state, RIGHTARG = metric_state, FUNCTION = state_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
COMMENT ON OPERATOR <> (metric_state, metric_state) IS 'inequality of metric states';
CREATE FUNCTION metric_state_final(internal) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_agg_flatten' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION metric_state_final(internal) IS 'aggregate support: the metric_state an aggregate built';
CREATE FUNCTION metric_state_merge_trans(internal, metric_state) RETURNS internal
    AS 'MODULE_PATHNAME', 'pz_merge_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION metric_state_merge_trans(internal, metric_state) IS 'aggregate support: merge_agg(metric_state) transition';
CREATE AGGREGATE merge_agg(metric_state) (
    SFUNC = metric_state_merge_trans, STYPE = internal, FINALFUNC = metric_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg(metric_state) IS 'merge a column of metric states of one op';

-- metric: count / sum / min / max ------------------------------------------
-- Rows whose value is NULL are skipped (for op count pass any non-NULL
-- value, e.g. the column counted, as to count(x)); op must be the same in
-- every row.  NaN and infinite values are an error.
CREATE FUNCTION metric_agg_trans(internal, op text, value numeric) RETURNS internal
    AS 'MODULE_PATHNAME', 'metric_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION metric_agg_trans(internal, text, numeric) IS 'aggregate support: metric_agg transition';
CREATE AGGREGATE metric_agg(op text, value numeric) (
    SFUNC = metric_agg_trans, STYPE = internal, FINALFUNC = metric_state_final, SSPACE = 96,
    COMBINEFUNC = trait_state_combine, SERIALFUNC = trait_state_serialize,
    DESERIALFUNC = trait_state_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE metric_agg(text, numeric) IS 'personalize trait: exact count, sum, min or max (op) of the non-NULL values, as a metric_state';
-- Not STRICT: a NULL or 0 count is NULL (no events), a NULL op or a NULL
-- value with events is an error.
CREATE FUNCTION metric_state_make(op text, count bigint, value numeric) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'metric_state_make' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION metric_state_make(text, bigint, numeric) IS 'a metric_state from built-in aggregate results, e.g. metric_state_make(''sum'', count(x), sum(x)); NULL when count is NULL or 0; value is ignored for op count';
CREATE FUNCTION metric_value(metric_state) RETURNS numeric
    AS 'MODULE_PATHNAME', 'metric_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION metric_value(metric_state) IS 'the sum, min or max of the state; for op count, the count';
CREATE FUNCTION metric_count(metric_state) RETURNS bigint
    AS 'MODULE_PATHNAME', 'metric_count' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION metric_count(metric_state) IS 'the number of events folded into the state';
CREATE FUNCTION metric_op(metric_state) RETURNS text
    AS 'MODULE_PATHNAME', 'metric_op' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION metric_op(metric_state) IS 'the op of the state: count, sum, min or max';

-- ===========================================================================
-- Combinable aggregates (src/combinable.c): the trait aggregates in the form
-- Citus combines across nodes.  Each <name>_combinable takes the arguments
-- of <name> and gives the same state; its STYPE is that state type (held
-- as an expanded object while it runs), not internal, so that Citus runs
-- the transition on the workers and combines the partial states, shipped
-- as text, on the coordinator (docs/scale-out.md).
-- ===========================================================================

CREATE FUNCTION _state_combine(recent_state, recent_state) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(recent_state, recent_state) IS
    'The combine function of the combinable aggregates of recent_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(top_state, top_state) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(top_state, top_state) IS
    'The combine function of the combinable aggregates of top_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(windowed_state, windowed_state) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(windowed_state, windowed_state) IS
    'The combine function of the combinable aggregates of windowed_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(distinct_state, distinct_state) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(distinct_state, distinct_state) IS
    'The combine function of the combinable aggregates of distinct_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(first_state, first_state) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(first_state, first_state) IS
    'The combine function of the combinable aggregates of first_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(last_state, last_state) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(last_state, last_state) IS
    'The combine function of the combinable aggregates of last_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(session_state, session_state) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(session_state, session_state) IS
    'The combine function of the combinable aggregates of session_state: the two states merged (NULL is the empty state).';
CREATE FUNCTION _state_combine(metric_state, metric_state) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_combinable_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION _state_combine(metric_state, metric_state) IS
    'The combine function of the combinable aggregates of metric_state: the two states merged (NULL is the empty state).';

CREATE FUNCTION recent_agg_combinable_trans(recent_state, value text, ts timestamptz, n integer) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_recent_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION recent_agg_combinable_trans(recent_state, text, timestamptz, integer) IS 'aggregate support: recent_agg_combinable transition';
CREATE AGGREGATE recent_agg_combinable(value text, ts timestamptz, n integer) (
    SFUNC = recent_agg_combinable_trans, STYPE = recent_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE recent_agg_combinable(text, timestamptz, integer) IS
    'recent_agg in the form Citus combines across nodes (STYPE recent_state): the same arguments, the same state.';
CREATE FUNCTION recent_agg_combinable_trans(recent_state, value bigint, ts timestamptz, n integer) RETURNS recent_state
    AS 'MODULE_PATHNAME', 'pz_recent_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION recent_agg_combinable_trans(recent_state, bigint, timestamptz, integer) IS 'aggregate support: recent_agg_combinable transition';
CREATE AGGREGATE recent_agg_combinable(value bigint, ts timestamptz, n integer) (
    SFUNC = recent_agg_combinable_trans, STYPE = recent_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE recent_agg_combinable(bigint, timestamptz, integer) IS
    'recent_agg in the form Citus combines across nodes (STYPE recent_state): the same arguments, the same state.';
CREATE FUNCTION top_agg_combinable_trans(top_state, value text, ts timestamptz, n integer, half_life interval) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_top_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION top_agg_combinable_trans(top_state, text, timestamptz, integer, interval) IS 'aggregate support: top_agg_combinable transition';
CREATE AGGREGATE top_agg_combinable(value text, ts timestamptz, n integer, half_life interval) (
    SFUNC = top_agg_combinable_trans, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE top_agg_combinable(text, timestamptz, integer, interval) IS
    'top_agg in the form Citus combines across nodes (STYPE top_state): the same arguments, the same state.';
CREATE FUNCTION top_agg_combinable_trans(top_state, value text, ts timestamptz, n integer, half_life interval, weight float8) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_top_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION top_agg_combinable_trans(top_state, text, timestamptz, integer, interval, float8) IS 'aggregate support: top_agg_combinable transition';
CREATE AGGREGATE top_agg_combinable(value text, ts timestamptz, n integer, half_life interval, weight float8) (
    SFUNC = top_agg_combinable_trans, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE top_agg_combinable(text, timestamptz, integer, interval, float8) IS
    'top_agg in the form Citus combines across nodes (STYPE top_state): the same arguments, the same state.';
CREATE FUNCTION top_agg_combinable_trans(top_state, value bigint, ts timestamptz, n integer, half_life interval) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_top_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION top_agg_combinable_trans(top_state, bigint, timestamptz, integer, interval) IS 'aggregate support: top_agg_combinable transition';
CREATE AGGREGATE top_agg_combinable(value bigint, ts timestamptz, n integer, half_life interval) (
    SFUNC = top_agg_combinable_trans, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE top_agg_combinable(bigint, timestamptz, integer, interval) IS
    'top_agg in the form Citus combines across nodes (STYPE top_state): the same arguments, the same state.';
CREATE FUNCTION top_agg_combinable_trans(top_state, value bigint, ts timestamptz, n integer, half_life interval, weight float8) RETURNS top_state
    AS 'MODULE_PATHNAME', 'pz_top_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION top_agg_combinable_trans(top_state, bigint, timestamptz, integer, interval, float8) IS 'aggregate support: top_agg_combinable transition';
CREATE AGGREGATE top_agg_combinable(value bigint, ts timestamptz, n integer, half_life interval, weight float8) (
    SFUNC = top_agg_combinable_trans, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE top_agg_combinable(bigint, timestamptz, integer, interval, float8) IS
    'top_agg in the form Citus combines across nodes (STYPE top_state): the same arguments, the same state.';
CREATE FUNCTION windowed_agg_combinable_trans(windowed_state, ts timestamptz) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_windowed_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION windowed_agg_combinable_trans(windowed_state, timestamptz) IS 'aggregate support: windowed_agg_combinable transition';
CREATE AGGREGATE windowed_agg_combinable(ts timestamptz) (
    SFUNC = windowed_agg_combinable_trans, STYPE = windowed_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE windowed_agg_combinable(timestamptz) IS
    'windowed_agg in the form Citus combines across nodes (STYPE windowed_state): the same arguments, the same state.';
CREATE FUNCTION windowed_agg_combinable_trans(windowed_state, ts timestamptz, value float8) RETURNS windowed_state
    AS 'MODULE_PATHNAME', 'pz_windowed_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION windowed_agg_combinable_trans(windowed_state, timestamptz, float8) IS 'aggregate support: windowed_agg_combinable transition';
CREATE AGGREGATE windowed_agg_combinable(ts timestamptz, value float8) (
    SFUNC = windowed_agg_combinable_trans, STYPE = windowed_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE windowed_agg_combinable(timestamptz, float8) IS
    'windowed_agg in the form Citus combines across nodes (STYPE windowed_state): the same arguments, the same state.';
CREATE FUNCTION distinct_agg_combinable_trans(distinct_state, value text) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_distinct_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION distinct_agg_combinable_trans(distinct_state, text) IS 'aggregate support: distinct_agg_combinable transition';
CREATE AGGREGATE distinct_agg_combinable(value text) (
    SFUNC = distinct_agg_combinable_trans, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE distinct_agg_combinable(text) IS
    'distinct_agg in the form Citus combines across nodes (STYPE distinct_state): the same arguments, the same state.';
CREATE FUNCTION distinct_agg_combinable_trans(distinct_state, value text, p integer) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_distinct_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION distinct_agg_combinable_trans(distinct_state, text, integer) IS 'aggregate support: distinct_agg_combinable transition';
CREATE AGGREGATE distinct_agg_combinable(value text, p integer) (
    SFUNC = distinct_agg_combinable_trans, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE distinct_agg_combinable(text, integer) IS
    'distinct_agg in the form Citus combines across nodes (STYPE distinct_state): the same arguments, the same state.';
CREATE FUNCTION distinct_agg_combinable_trans(distinct_state, value bigint) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_distinct_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION distinct_agg_combinable_trans(distinct_state, bigint) IS 'aggregate support: distinct_agg_combinable transition';
CREATE AGGREGATE distinct_agg_combinable(value bigint) (
    SFUNC = distinct_agg_combinable_trans, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE distinct_agg_combinable(bigint) IS
    'distinct_agg in the form Citus combines across nodes (STYPE distinct_state): the same arguments, the same state.';
CREATE FUNCTION distinct_agg_combinable_trans(distinct_state, value bigint, p integer) RETURNS distinct_state
    AS 'MODULE_PATHNAME', 'pz_distinct_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION distinct_agg_combinable_trans(distinct_state, bigint, integer) IS 'aggregate support: distinct_agg_combinable transition';
CREATE AGGREGATE distinct_agg_combinable(value bigint, p integer) (
    SFUNC = distinct_agg_combinable_trans, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE distinct_agg_combinable(bigint, integer) IS
    'distinct_agg in the form Citus combines across nodes (STYPE distinct_state): the same arguments, the same state.';
CREATE FUNCTION first_agg_combinable_trans(first_state, value text, ts timestamptz) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_first_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION first_agg_combinable_trans(first_state, text, timestamptz) IS 'aggregate support: first_agg_combinable transition';
CREATE AGGREGATE first_agg_combinable(value text, ts timestamptz) (
    SFUNC = first_agg_combinable_trans, STYPE = first_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE first_agg_combinable(text, timestamptz) IS
    'first_agg in the form Citus combines across nodes (STYPE first_state): the same arguments, the same state.';
CREATE FUNCTION last_agg_combinable_trans(last_state, value text, ts timestamptz) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_last_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION last_agg_combinable_trans(last_state, text, timestamptz) IS 'aggregate support: last_agg_combinable transition';
CREATE AGGREGATE last_agg_combinable(value text, ts timestamptz) (
    SFUNC = last_agg_combinable_trans, STYPE = last_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE last_agg_combinable(text, timestamptz) IS
    'last_agg in the form Citus combines across nodes (STYPE last_state): the same arguments, the same state.';
CREATE FUNCTION first_agg_combinable_trans(first_state, value bigint, ts timestamptz) RETURNS first_state
    AS 'MODULE_PATHNAME', 'pz_first_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION first_agg_combinable_trans(first_state, bigint, timestamptz) IS 'aggregate support: first_agg_combinable transition';
CREATE AGGREGATE first_agg_combinable(value bigint, ts timestamptz) (
    SFUNC = first_agg_combinable_trans, STYPE = first_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE first_agg_combinable(bigint, timestamptz) IS
    'first_agg in the form Citus combines across nodes (STYPE first_state): the same arguments, the same state.';
CREATE FUNCTION last_agg_combinable_trans(last_state, value bigint, ts timestamptz) RETURNS last_state
    AS 'MODULE_PATHNAME', 'pz_last_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION last_agg_combinable_trans(last_state, bigint, timestamptz) IS 'aggregate support: last_agg_combinable transition';
CREATE AGGREGATE last_agg_combinable(value bigint, ts timestamptz) (
    SFUNC = last_agg_combinable_trans, STYPE = last_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE last_agg_combinable(bigint, timestamptz) IS
    'last_agg in the form Citus combines across nodes (STYPE last_state): the same arguments, the same state.';
CREATE FUNCTION session_agg_combinable_trans(session_state, ts timestamptz, category text, item text) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_session_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION session_agg_combinable_trans(session_state, timestamptz, text, text) IS 'aggregate support: session_agg_combinable transition';
CREATE AGGREGATE session_agg_combinable(ts timestamptz, category text, item text) (
    SFUNC = session_agg_combinable_trans, STYPE = session_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE session_agg_combinable(timestamptz, text, text) IS
    'session_agg in the form Citus combines across nodes (STYPE session_state): the same arguments, the same state.';
CREATE FUNCTION session_agg_combinable_trans(session_state, ts timestamptz, category text, item text, gap interval) RETURNS session_state
    AS 'MODULE_PATHNAME', 'pz_session_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION session_agg_combinable_trans(session_state, timestamptz, text, text, interval) IS 'aggregate support: session_agg_combinable transition';
CREATE AGGREGATE session_agg_combinable(ts timestamptz, category text, item text, gap interval) (
    SFUNC = session_agg_combinable_trans, STYPE = session_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE session_agg_combinable(timestamptz, text, text, interval) IS
    'session_agg in the form Citus combines across nodes (STYPE session_state): the same arguments, the same state.';
CREATE FUNCTION metric_agg_combinable_trans(metric_state, op text, value numeric) RETURNS metric_state
    AS 'MODULE_PATHNAME', 'pz_metric_combinable_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION metric_agg_combinable_trans(metric_state, text, numeric) IS 'aggregate support: metric_agg_combinable transition';
CREATE AGGREGATE metric_agg_combinable(op text, value numeric) (
    SFUNC = metric_agg_combinable_trans, STYPE = metric_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE metric_agg_combinable(text, numeric) IS
    'metric_agg in the form Citus combines across nodes (STYPE metric_state): the same arguments, the same state.';

CREATE AGGREGATE merge_agg_combinable(recent_state) (
    SFUNC = _state_combine, STYPE = recent_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(recent_state) IS
    'merge_agg(recent_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(top_state) (
    SFUNC = _state_combine, STYPE = top_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(top_state) IS
    'merge_agg(top_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(windowed_state) (
    SFUNC = _state_combine, STYPE = windowed_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(windowed_state) IS
    'merge_agg(windowed_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(distinct_state) (
    SFUNC = _state_combine, STYPE = distinct_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(distinct_state) IS
    'merge_agg(distinct_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(first_state) (
    SFUNC = _state_combine, STYPE = first_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(first_state) IS
    'merge_agg(first_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(last_state) (
    SFUNC = _state_combine, STYPE = last_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(last_state) IS
    'merge_agg(last_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(session_state) (
    SFUNC = _state_combine, STYPE = session_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(session_state) IS
    'merge_agg(session_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';
CREATE AGGREGATE merge_agg_combinable(metric_state) (
    SFUNC = _state_combine, STYPE = metric_state, COMBINEFUNC = _state_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE merge_agg_combinable(metric_state) IS
    'merge_agg(metric_state) in the form Citus combines across nodes: the merge of the states; NULL inputs are skipped.';

-- ===========================================================================
-- Configuration tables
-- ===========================================================================

CREATE TABLE sources (
    id                integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    relation          regclass NOT NULL UNIQUE,
    event_time_column name NOT NULL,
    event_type_column name,
    event_type        text,
    registered_at     timestamptz NOT NULL DEFAULT now(),
    owner             regrole NOT NULL,
    CONSTRAINT event_type_is_column_or_constant CHECK (num_nonnulls(event_type_column, event_type) <= 1)
);
COMMENT ON TABLE sources IS
    'Registered event tables: event-time column, event type (a column or a constant).  Identifier columns are in source_identifiers, named fields in source_fields.';
COMMENT ON COLUMN sources.owner IS
    'The role that registered the source: the stream and rebuild() read it only while this role may read every mapped column and sees every row.';

CREATE TABLE source_identifiers (
    source_id    integer NOT NULL REFERENCES sources ON DELETE CASCADE,
    column_name  name NOT NULL,
    namespace_id integer NOT NULL,
    PRIMARY KEY (source_id, column_name),
    UNIQUE (source_id, namespace_id)
);
COMMENT ON TABLE source_identifiers IS
    'Which column of a source holds identifiers of which namespace.';

-- A namespace a source maps a column to cannot be dropped.  (A trigger, not
-- a foreign key: tests and tools TRUNCATE namespaces on their own.)
CREATE FUNCTION _namespace_in_use() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    used text;
BEGIN
    SELECT string_agg(s.relation::text || '.' || quote_ident(si.column_name), ', ' ORDER BY s.id) INTO used
      FROM personalize.source_identifiers si JOIN personalize.sources s ON s.id = si.source_id
     WHERE si.namespace_id = OLD.id;
    IF used IS NOT NULL THEN
        RAISE EXCEPTION 'namespace % is used by source columns %', OLD.name, used
            USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Unregister those sources first.';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER namespaces_in_use BEFORE DELETE ON namespaces
    FOR EACH ROW EXECUTE FUNCTION _namespace_in_use();

CREATE TABLE source_fields (
    source_id   integer NOT NULL REFERENCES sources ON DELETE CASCADE,
    field       text NOT NULL,
    column_name name NOT NULL,
    json_key    text,
    PRIMARY KEY (source_id, field),
    CONSTRAINT field_name_is_plain CHECK (field ~ '^[a-z][a-z0-9_]{0,62}$')
);
COMMENT ON TABLE source_fields IS
    'Named event fields of a source: a column, or the key json_key of a jsonb column.  A field a source does not map is the column of that name, if there is one.';

CREATE TABLE traits (
    id          integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL,
    field       text,
    item_field  text,
    sources     regclass[],
    event_types text[],
    n           integer,
    half_life   interval,
    windows     interval[],
    gap         interval,
    hll_precision   integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT trait_name_is_plain CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT trait_kind_is_known CHECK (kind IN ('count', 'sum', 'min', 'max', 'first', 'last',
        'recent', 'top', 'windowed_count', 'windowed_sum', 'distinct', 'session'))
);
COMMENT ON TABLE traits IS
    'Trait definitions: kind, value field, sources (NULL: every source with the field), event types (NULL: all), and the kind''s parameters.  id is the trait''s key in the profile type.';

SELECT pg_catalog.pg_extension_config_dump('sources', '');
SELECT pg_catalog.pg_extension_config_dump('sources_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('source_identifiers', '');
SELECT pg_catalog.pg_extension_config_dump('source_fields', '');
SELECT pg_catalog.pg_extension_config_dump('traits', '');
SELECT pg_catalog.pg_extension_config_dump('traits_id_seq', '');

-- ===========================================================================
-- Helpers (internal; names start with an underscore)
-- ===========================================================================

-- A plain lower-case name, or an ERROR saying which kind of name it is for.
CREATE FUNCTION _check_name(what text, name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid % name %', what, coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use lower-case letters, digits and _, starting with a letter, at most 63 characters.';
    END IF;
END $$;

-- The caller may change personalize's configuration, or an ERROR that says
-- which grant is missing.
CREATE FUNCTION _require_admin(action text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    who regrole := personalize._configuring_role();
BEGIN
    PERFORM personalize._refuse_in_restricted(action);
    IF NOT pg_has_role(who, 'personalize_admin', 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to %', action
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Changing personalize''s configuration needs the personalize_admin role: GRANT personalize_admin TO %s.', who);
    END IF;
END $$;

-- A column of a table: its type, or an ERROR that lists the columns there are.
CREATE FUNCTION _column_type(relation regclass, column_name text, what text) RETURNS oid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t oid;
BEGIN
    IF column_name IS NULL THEN
        RAISE EXCEPTION '% column must not be NULL', what USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT a.atttypid INTO t FROM pg_attribute a
     WHERE a.attrelid = relation AND a.attname = column_name AND a.attnum > 0 AND NOT a.attisdropped;
    IF t IS NULL THEN
        RAISE EXCEPTION '% column % does not exist in table %', what, quote_ident(column_name), relation
            USING ERRCODE = 'undefined_column',
                  HINT = 'Its columns are: ' || (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                                                  FROM pg_attribute a
                                                 WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped) || '.';
    END IF;
    RETURN t;
END $$;

-- Usable as an identifier or a text value: strings, numbers, uuids, enums.
CREATE FUNCTION _is_scalar_type(t oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT typcategory IN ('S', 'N', 'U', 'E') AND typelem = 0 AND typtype IN ('b', 'e', 'd')
          AND t NOT IN ('json'::regtype, 'jsonb'::regtype)
          FROM pg_type WHERE oid = t);

-- A text value as numeric, NULL if it is not a number (a bad value in a
-- batch rebuild is skipped, never an ERROR that stops the rebuild).
CREATE FUNCTION _numeric_or_null(value text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,4})?\s*$'
            THEN value::numeric END;

-- The SQL expression of a source's field, or NULL if the source has no such
-- field.  Names are quoted here, and only here.
CREATE FUNCTION _field_expr(source_id integer, field text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f record;
    rel regclass;
BEGIN
    SELECT relation INTO rel FROM personalize.sources s WHERE s.id = source_id;
    SELECT * INTO f FROM personalize.source_fields sf WHERE sf.source_id = _field_expr.source_id AND sf.field = _field_expr.field;
    IF FOUND THEN
        IF f.json_key IS NOT NULL THEN
            RETURN format('(e.%I ->> %L)', f.column_name, f.json_key);
        END IF;
        RETURN personalize._column_text_sql(rel, f.column_name);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = field
                  AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RETURN personalize._column_text_sql(rel, field::name);
    END IF;
    RETURN NULL;
END $$;

-- A window's column suffix, as the interval was written: 1 hour -> 1h,
-- 24 hours -> 24h, 7 days -> 7d, 15 minutes -> 15min.
CREATE FUNCTION _window_label(w interval) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (WITH s AS (SELECT extract(epoch FROM w)::bigint AS secs)
        SELECT CASE WHEN w = date_trunc('day', w) THEN (secs / 86400) || 'd'
                    WHEN secs % 3600 = 0 THEN (secs / 3600) || 'h'
                    WHEN secs % 60 = 0 THEN (secs / 60) || 'min'
                    ELSE secs || 's' END FROM s);

-- ===========================================================================
-- Sources
-- ===========================================================================

CREATE FUNCTION register_source(relation regclass,
                                identifiers jsonb,
                                event_time name,
                                event_type text DEFAULT NULL,
                                event_type_column name DEFAULT NULL,
                                fields jsonb DEFAULT '{}',
                                backfill boolean DEFAULT true)
RETURNS integer
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION register_source(regclass, jsonb, name, text, name, jsonb, boolean) IS
    'Register an event table: identifiers maps columns to namespaces, event_time names the time column, the event type is a constant or a column, fields name value columns or jsonb keys.  backfill: fold the rows already there into the profiles.';

CREATE FUNCTION unregister_source(relation regclass) RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION unregister_source(regclass) IS
    'Stop reading an event table.  Profiles keep what its events contributed until rebuild().';

-- A registered source cannot be dropped (DROP TABLE, DROP SCHEMA ...
-- CASCADE) while it is registered, as a foreign key would refuse: its
-- registration would point at nothing and stop every rebuild.
-- SECURITY DEFINER: it runs at every DROP in the database, by any role,
-- and must read personalize.sources, which PUBLIC cannot.
CREATE FUNCTION _source_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped text;
    n integer;
BEGIN
    -- most drops drop no table; DROP EXTENSION personalize drops the
    -- configuration itself
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_dropped_objects() d
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
                      AND d.objsubid OPERATOR(pg_catalog.=) 0)
       OR pg_catalog.to_regclass('personalize.sources') IS NULL THEN
        RETURN;
    END IF;
    SELECT pg_catalog.string_agg(d.object_identity, ', ' ORDER BY d.object_identity), pg_catalog.count(*)
      INTO dropped, n
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
      JOIN personalize.sources s ON s.relation::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
       AND d.objsubid OPERATOR(pg_catalog.=) 0;
    IF dropped IS NOT NULL THEN
        RAISE EXCEPTION 'cannot drop %: %', dropped,
                        CASE WHEN n = 1 THEN 'it is a personalize source' ELSE 'they are personalize sources' END
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Unregister it first with personalize.unregister_source().';
    END IF;
END $$;
CREATE EVENT TRIGGER personalize_source_dropped ON sql_drop
    EXECUTE FUNCTION _source_dropped();

-- ===========================================================================
-- Traits
-- ===========================================================================

-- Every source a trait reads, with the SQL of its value (NULL when the kind
-- takes none).  A trait without named sources reads every source that has
-- its field; one with named sources must find the field in each.
CREATE FUNCTION _trait_sources(trait_id integer)
RETURNS TABLE (source_id integer, value_expr text, item_expr text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tr personalize.traits;
    s personalize.sources;
    v text;
    it text;
BEGIN
    SELECT * INTO tr FROM personalize.traits WHERE id = trait_id;
    FOR s IN SELECT * FROM personalize.sources ORDER BY id LOOP
        CONTINUE WHEN tr.sources IS NOT NULL AND NOT s.relation = ANY (tr.sources);
        v := CASE WHEN tr.field IS NOT NULL THEN personalize._field_expr(s.id, tr.field) END;
        it := CASE WHEN tr.item_field IS NOT NULL THEN personalize._field_expr(s.id, tr.item_field) END;
        CONTINUE WHEN tr.field IS NOT NULL AND v IS NULL;
        source_id := s.id;
        value_expr := v;
        item_expr := it;
        RETURN NEXT;
    END LOOP;
END $$;

-- ERROR unless every source a trait names has the trait's fields.
CREATE FUNCTION _check_trait_sources(trait_id integer) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tr personalize.traits;
    rel regclass;
BEGIN
    SELECT * INTO tr FROM personalize.traits WHERE id = trait_id;
    IF tr.sources IS NULL THEN
        RETURN;
    END IF;
    FOREACH rel IN ARRAY tr.sources LOOP
        IF NOT EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = rel) THEN
            RAISE EXCEPTION 'trait %: % is not a source', tr.name, rel
                USING ERRCODE = 'undefined_object', HINT = 'Register it with personalize.register_source() first.';
        END IF;
        IF tr.field IS NOT NULL AND personalize._field_expr((SELECT id FROM personalize.sources s WHERE s.relation = rel), tr.field) IS NULL THEN
            RAISE EXCEPTION 'trait %: source % has no field %', tr.name, rel, quote_literal(tr.field)
                USING ERRCODE = 'undefined_column',
                      HINT = 'Name it in the source''s fields, or use a column of that name.';
        END IF;
        IF tr.item_field IS NOT NULL AND personalize._field_expr((SELECT id FROM personalize.sources s WHERE s.relation = rel), tr.item_field) IS NULL THEN
            RAISE EXCEPTION 'trait %: source % has no field %', tr.name, rel, quote_literal(tr.item_field)
                USING ERRCODE = 'undefined_column',
                      HINT = 'Name it in the source''s fields, or use a column of that name.';
        END IF;
    END LOOP;
END $$;

-- Check a trait row's kind and parameters, filling in defaults.
CREATE FUNCTION _check_trait(tr personalize.traits) RETURNS personalize.traits
LANGUAGE plpgsql AS $$
DECLARE
    w interval;
    needs_field boolean;
BEGIN
    PERFORM personalize._check_name('trait', tr.name);
    IF tr.name IN ('profile_id', 'key_namespace', 'key_value', 'first_seen', 'last_seen', 'updated_at') THEN
        RAISE EXCEPTION 'trait name % is taken by a column of personalize.profile_view', tr.name
            USING ERRCODE = 'invalid_name', HINT = 'Choose another name.';
    END IF;
    IF tr.kind IS NULL OR tr.kind NOT IN ('count', 'sum', 'min', 'max', 'first', 'last', 'recent', 'top',
                                          'windowed_count', 'windowed_sum', 'distinct', 'session') THEN
        RAISE EXCEPTION 'trait %: unknown kind %', tr.name, coalesce(quote_literal(tr.kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Kinds: count, sum, min, max, first, last, recent, top, windowed_count, windowed_sum, distinct, session.';
    END IF;
    needs_field := tr.kind NOT IN ('count', 'windowed_count');
    IF needs_field AND tr.field IS NULL THEN
        RAISE EXCEPTION 'trait %: a % trait needs a field', tr.name, tr.kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass field => ''name'' (a source field or column).';
    END IF;
    IF tr.field IS NOT NULL THEN
        PERFORM personalize._check_name('field', tr.field);
    END IF;
    IF tr.item_field IS NOT NULL THEN
        IF tr.kind <> 'session' THEN
            RAISE EXCEPTION 'trait %: item_field is for session traits', tr.name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM personalize._check_name('field', tr.item_field);
    END IF;
    IF tr.event_types IS NOT NULL AND (cardinality(tr.event_types) = 0 OR array_position(tr.event_types, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'trait %: event_types must be NULL (all events) or a non-empty array without NULLs', tr.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.sources IS NOT NULL AND (cardinality(tr.sources) = 0 OR array_position(tr.sources, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'trait %: sources must be NULL (every source with the field) or a non-empty array without NULLs', tr.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- each parameter belongs to some kinds only, and has a default there
    IF tr.n IS NOT NULL AND tr.kind NOT IN ('recent', 'top') THEN
        RAISE EXCEPTION 'trait %: n is for recent and top traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind IN ('recent', 'top') THEN
        tr.n := coalesce(tr.n, 10);
        IF tr.n NOT BETWEEN 1 AND 1000 THEN
            RAISE EXCEPTION 'trait %: n is %', tr.name, tr.n USING ERRCODE = 'invalid_parameter_value', HINT = 'n must be between 1 and 1000.';
        END IF;
    END IF;
    IF tr.half_life IS NOT NULL AND tr.kind <> 'top' THEN
        RAISE EXCEPTION 'trait %: half_life is for top traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind = 'top' THEN
        tr.half_life := coalesce(tr.half_life, interval '30 days');
        IF tr.half_life <= interval '0' THEN
            RAISE EXCEPTION 'trait %: half_life must be positive', tr.name USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF tr.windows IS NOT NULL AND tr.kind NOT IN ('windowed_count', 'windowed_sum') THEN
        RAISE EXCEPTION 'trait %: windows are for windowed_count and windowed_sum traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind IN ('windowed_count', 'windowed_sum') THEN
        tr.windows := coalesce(tr.windows, ARRAY['1 hour', '24 hours', '7 days', '30 days']::interval[]);
        IF cardinality(tr.windows) = 0 OR cardinality(tr.windows) > 16 THEN
            RAISE EXCEPTION 'trait %: give 1 to 16 windows', tr.name USING ERRCODE = 'invalid_parameter_value';
        END IF;
        FOREACH w IN ARRAY tr.windows LOOP
            IF w IS NULL OR w < interval '1 minute' OR w > interval '90 days'
               OR extract(epoch FROM w)::numeric % 60 <> 0 THEN
                RAISE EXCEPTION 'trait %: window % is not a whole number of minutes between 1 minute and 90 days', tr.name, coalesce(w::text, 'NULL')
                    USING ERRCODE = 'invalid_parameter_value', HINT = 'E.g. windows => ''{1 hour, 24 hours, 7 days, 30 days}''.';
            END IF;
        END LOOP;
        IF (SELECT count(DISTINCT personalize._window_label(x)) FROM unnest(tr.windows) x) <> cardinality(tr.windows) THEN
            RAISE EXCEPTION 'trait %: two windows are the same length', tr.name USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF tr.gap IS NOT NULL AND tr.kind <> 'session' THEN
        RAISE EXCEPTION 'trait %: gap is for session traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind = 'session' THEN
        tr.gap := coalesce(tr.gap, interval '30 minutes');
    END IF;
    IF tr.hll_precision IS NOT NULL AND tr.kind <> 'distinct' THEN
        RAISE EXCEPTION 'trait %: hll_precision is for distinct traits', tr.name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tr.kind = 'distinct' THEN
        tr.hll_precision := coalesce(tr.hll_precision, 12);
        IF tr.hll_precision NOT BETWEEN 4 AND 16 THEN
            RAISE EXCEPTION 'trait %: hll_precision is %', tr.name, tr.hll_precision USING ERRCODE = 'invalid_parameter_value', HINT = 'hll_precision must be between 4 and 16.';
        END IF;
    END IF;
    RETURN tr;
END $$;

-- ERROR: there is no trait of this name (the hint lists those there are).
CREATE FUNCTION _unknown_trait(name text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE EXCEPTION 'trait % does not exist', coalesce(quote_literal(name), 'NULL')
        USING ERRCODE = 'undefined_object',
              HINT = coalesce('Traits: ' || (SELECT string_agg(t.name, ', ' ORDER BY t.name) FROM personalize.traits t) || '.',
                              'No trait is defined.');
END $$;

CREATE FUNCTION add_trait(name text, kind text,
                          field text DEFAULT NULL,
                          sources regclass[] DEFAULT NULL,
                          event_types text[] DEFAULT NULL,
                          n integer DEFAULT NULL,
                          half_life interval DEFAULT NULL,
                          windows interval[] DEFAULT NULL,
                          gap interval DEFAULT NULL,
                          item_field text DEFAULT NULL,
                          hll_precision integer DEFAULT NULL,
                          backfill boolean DEFAULT true)
RETURNS integer
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION add_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean) IS
    'Add a trait: kind (count, sum, min, max, first, last, recent, top, windowed_count, windowed_sum, distinct, session), the field it reads, sources (NULL: every source with the field), event types (NULL: all), and the kind''s parameters.  backfill: build it now for every profile from the sources.';

CREATE FUNCTION alter_trait(name text,
                            kind text DEFAULT NULL,
                            field text DEFAULT NULL,
                            sources regclass[] DEFAULT NULL,
                            event_types text[] DEFAULT NULL,
                            n integer DEFAULT NULL,
                            half_life interval DEFAULT NULL,
                            windows interval[] DEFAULT NULL,
                            gap interval DEFAULT NULL,
                            item_field text DEFAULT NULL,
                            hll_precision integer DEFAULT NULL,
                            all_sources boolean DEFAULT false,
                            all_event_types boolean DEFAULT false,
                            backfill boolean DEFAULT true)
RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION alter_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean, boolean, boolean) IS
    'Change a trait (NULL: unchanged; all_sources, all_event_types: drop the restriction).  Its states are rebuilt from the sources (backfill => false: removed).';

CREATE FUNCTION drop_trait(name text) RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION drop_trait(text) IS 'Drop a trait and remove its state from every profile.';

-- profile_columns(states, spec): every trait column of a profile from one call
CREATE FUNCTION profile_columns(states profile, spec text) RETURNS record
    AS 'MODULE_PATHNAME', 'pz_profile_columns' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION profile_columns(profile, text) IS
    'The columns of a profile named by spec, from one call: call it in FROM with a column definition list, one column per spec entry, e.g. profile_columns(p.states, ''1:recent;2:count;3:wcount:3600000000'') AS c(last_viewed text[], orders bigint, orders_in_1h bigint).  Spec entries, separated by ";": <trait id>:<accessor>, accessors count (bigint, 0 when absent), value (numeric), event_value (text), event_time (timestamptz), recent (text[]), top (text[]), distinct (bigint, 0 when absent), session (jsonb), wcount:<microseconds> (bigint, 0 when absent) and wsum:<microseconds> (double precision, 0 when absent), windows read at now().  A NULL profile reads as empty.';

-- ===========================================================================
-- The profile view: one typed column per trait
-- ===========================================================================

-- The view's columns of one trait, as (column name, profile_columns() spec
-- entry, type, comment).
CREATE FUNCTION _trait_columns(tr personalize.traits)
RETURNS TABLE (column_name text, spec text, column_type text, description text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    w interval;
    what text;
BEGIN
    what := format('%s trait %s', tr.kind, tr.name)
         || CASE WHEN tr.field IS NOT NULL THEN format(' of field %s', tr.field) ELSE '' END
         || CASE WHEN tr.event_types IS NOT NULL THEN format(' over events %s', array_to_string(tr.event_types, ', ')) ELSE '' END;
    CASE tr.kind
    WHEN 'count' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':count', 'bigint', what || ': number of events';
    WHEN 'sum', 'min', 'max' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':value', 'numeric', what;
    WHEN 'first', 'last' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':event_value', 'text', what || ': the value';
        RETURN QUERY SELECT tr.name || '_at', tr.id || ':event_time', 'timestamptz', what || ': its event time';
    WHEN 'recent' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':recent', 'text[]', what || format(': the %s most recent distinct values, newest first', tr.n);
    WHEN 'top' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':top', 'text[]', what || format(': the values by weight decayed with a half-life of %s, heaviest first', tr.half_life);
    WHEN 'distinct' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':distinct', 'bigint', what || ': approximate number of distinct values';
    WHEN 'session' THEN
        RETURN QUERY SELECT tr.name, tr.id || ':session', 'jsonb', what || ': the current session (start, last activity, events, dominant category, last item)';
    WHEN 'windowed_count', 'windowed_sum' THEN
        FOREACH w IN ARRAY tr.windows LOOP
            -- windows are at most 90 days, where extract(epoch) counts a month
            -- as 30 days, as windowed_count() does
            RETURN QUERY SELECT tr.name || '_' || personalize._window_label(w),
                format('%s:%s:%s', tr.id, CASE tr.kind WHEN 'windowed_count' THEN 'wcount' ELSE 'wsum' END,
                       (extract(epoch FROM w) * 1000000)::bigint),
                CASE tr.kind WHEN 'windowed_count' THEN 'bigint' ELSE 'double precision' END,
                what || format(': events in the last %s, counted at read time', personalize._window_label(w));
        END LOOP;
    END CASE;
END $$;

-- Drop and create personalize.profile_view from the traits: CREATE OR
-- REPLACE cannot drop or retype columns.  SECURITY DEFINER, so that any
-- member of personalize_admin may regenerate the view without CREATE on the
-- extension's schema or owning the view; everything it splices is a trait
-- name (checked plain by the traits table), a quoted literal or a number.
CREATE FUNCTION _regenerate_view() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    coldefs text;
    spec text;
    c record;
    dup text;
    ddl text;
BEGIN
    SELECT x.column_name INTO dup
      FROM personalize.traits t, personalize._trait_columns(t) x
     GROUP BY x.column_name HAVING count(*) > 1 LIMIT 1;
    IF dup IS NULL THEN
        SELECT x.column_name INTO dup
          FROM personalize.traits t, personalize._trait_columns(t) x
         WHERE x.column_name IN ('profile_id', 'key_namespace', 'key_value', 'first_seen', 'last_seen', 'updated_at', 'audiences');
    END IF;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'two columns of personalize.profile_view would be named %', dup
            USING ERRCODE = 'duplicate_column', HINT = 'Rename one of the traits: windowed traits add _1h, _24h, ... and first/last traits add _at; get_profile() names the profile''s audiences "audiences".';
    END IF;
    -- every trait column comes from one profile_columns() call per row
    SELECT string_agg(format('%I %s', x.column_name, x.column_type), ', ' ORDER BY t.id, x.ord),
           string_agg(x.spec, ';' ORDER BY t.id, x.ord)
      INTO coldefs, spec
      FROM personalize.traits t, personalize._trait_columns(t) WITH ORDINALITY x(column_name, spec, column_type, description, ord);
    -- each Citus node makes its own view: the coordinator's must not replace theirs
    ddl := current_setting('citus.enable_ddl_propagation', true);
    IF ddl IS NOT NULL THEN
        PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
    END IF;
    IF to_regclass('personalize.profile_view') IS NOT NULL THEN
        DROP VIEW personalize.profile_view;
    END IF;
    EXECUTE format(E'CREATE VIEW personalize.profile_view AS\n'
                   'SELECT p.id AS profile_id, n.name AS key_namespace,\n'
                   '       p.key_value, p.first_seen, p.last_seen, p.updated_at%s\n'
                   '  FROM personalize.profiles p\n'
                   '  LEFT JOIN personalize.namespaces n ON n.id = p.key_namespace_id%s',
                   CASE WHEN coldefs IS NOT NULL THEN ', c.*' ELSE '' END,
                   CASE WHEN coldefs IS NOT NULL
                        THEN format(E'\n  LEFT JOIN LATERAL personalize.profile_columns(p.states, %L)\n'
                                    '       AS c(%s) ON true', spec, coldefs)
                        ELSE '' END);
    COMMENT ON VIEW personalize.profile_view IS
        'One row per profile, one typed column per trait (windowed traits: one per window, evaluated against now()).  Regenerated when traits change.';
    COMMENT ON COLUMN personalize.profile_view.profile_id IS 'The profile id (see personalize.resolve())';
    COMMENT ON COLUMN personalize.profile_view.key_namespace IS 'Namespace of the profile''s key identifier, its best';
    COMMENT ON COLUMN personalize.profile_view.key_value IS 'The profile''s key identifier';
    COMMENT ON COLUMN personalize.profile_view.first_seen IS 'Event time of the profile''s first event';
    COMMENT ON COLUMN personalize.profile_view.last_seen IS 'Event time of the profile''s last event';
    COMMENT ON COLUMN personalize.profile_view.updated_at IS 'When the profile was last written';
    FOR c IN SELECT x.* FROM personalize.traits t, personalize._trait_columns(t) x LOOP
        EXECUTE format('COMMENT ON COLUMN personalize.profile_view.%I IS %L', c.column_name, c.description);
    END LOOP;
    REVOKE ALL ON personalize.profile_view FROM PUBLIC;
    GRANT SELECT ON personalize.profile_view TO personalize_reader;
    -- a trait an audience reads cannot go or change its columns' types
    IF ddl IS NOT NULL THEN
        PERFORM set_config('citus.enable_ddl_propagation', ddl, true);
    END IF;
    PERFORM personalize._audiences_check_all();
    PERFORM personalize._audiences_changed();
END $$;

-- ===========================================================================
-- Rebuild
-- ===========================================================================

-- The SQL of one source's events folded per event key: (key, first and
-- last event time, states of the given traits (NULL: all)).  It groups by
-- the raw identifier columns, so the scan is a plain GROUP BY that
-- PostgreSQL may run in parallel, with no join; the key, the event's
-- identifiers as jsonb, is built once per group.
CREATE FUNCTION _source_part_sql(source_id integer, trait_ids integer[], refused boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s personalize.sources;
    id_cols text;
    key_expr text;
    time_expr text;
    type_expr text;
    states text := '''{}''::personalize.profile';
    agg text;
    filt text;
    ts record;
    tr personalize.traits;
    max_bytes integer := (SELECT st.setting::integer FROM pg_settings st WHERE st.name = 'personalize.max_value_bytes');
    cond text;
BEGIN
    SELECT * INTO s FROM personalize.sources WHERE id = source_id;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.relation) THEN
        RAISE EXCEPTION 'source % (id %) was dropped', s.relation, s.id
            USING ERRCODE = 'undefined_table', HINT = 'Unregister it with personalize.unregister_source().';
    END IF;
    SELECT string_agg(format('e.%I', si.column_name), ', ' ORDER BY n.name),
           'jsonb_build_object(' || string_agg(format('%L, %s', n.name, personalize._column_text_sql(s.relation, si.column_name)), ', ' ORDER BY n.name) || ')'
      INTO id_cols, key_expr
      FROM personalize.source_identifiers si JOIN personalize.namespaces n ON n.id = si.namespace_id
     WHERE si.source_id = s.id;
    -- a timestamp without time zone is UTC, a date its midnight UTC, whatever
    -- the session's TimeZone: the stream reads them so (decoder.c)
    time_expr := CASE (SELECT a.atttypid FROM pg_attribute a
                        WHERE a.attrelid = s.relation AND a.attname = s.event_time_column AND NOT a.attisdropped)
                      WHEN 'timestamp'::regtype THEN format('((e.%I) AT TIME ZONE ''UTC'')', s.event_time_column)
                      WHEN 'date'::regtype THEN format('((e.%I)::timestamp AT TIME ZONE ''UTC'')', s.event_time_column)
                      ELSE format('(e.%I)::timestamptz', s.event_time_column) END;
    type_expr := CASE WHEN s.event_type_column IS NOT NULL THEN personalize._column_text_sql(s.relation, s.event_type_column)
                      ELSE coalesce(quote_literal(s.event_type), 'NULL::text') END;
    FOR tr IN SELECT * FROM personalize.traits t
               WHERE trait_ids IS NULL OR t.id = ANY (trait_ids) ORDER BY t.id LOOP
        SELECT * INTO ts FROM personalize._trait_sources(tr.id) x WHERE x.source_id = s.id;
        CONTINUE WHEN NOT FOUND;
        filt := CASE WHEN tr.event_types IS NOT NULL
                     THEN format(' FILTER (WHERE %s = ANY (%L::text[]))', type_expr, tr.event_types) ELSE '' END;
        agg := CASE tr.kind
            WHEN 'count' THEN format('personalize.metric_state_make(''count'', count(%s)%s, NULL)', coalesce(ts.value_expr, '*'), filt)
            -- numbers read and compared by the stream's C code (field.c, metric.c)
            WHEN 'sum' THEN format('personalize.metric_agg(''sum'', personalize._field_number(%s))%s', ts.value_expr, filt)
            WHEN 'min' THEN format('personalize.metric_agg(''min'', personalize._field_number(%s))%s', ts.value_expr, filt)
            WHEN 'max' THEN format('personalize.metric_agg(''max'', personalize._field_number(%s))%s', ts.value_expr, filt)
            WHEN 'first' THEN format('personalize.first_agg(%s, %s)%s', ts.value_expr, time_expr, filt)
            WHEN 'last' THEN format('personalize.last_agg(%s, %s)%s', ts.value_expr, time_expr, filt)
            WHEN 'recent' THEN format('personalize.recent_agg(%s, %s, %s)%s', ts.value_expr, time_expr, tr.n, filt)
            WHEN 'top' THEN format('personalize.top_agg(%s, %s, %s, %L::interval)%s', ts.value_expr, time_expr, tr.n, tr.half_life, filt)
            WHEN 'windowed_count' THEN
                CASE WHEN ts.value_expr IS NULL THEN format('personalize.windowed_agg(%s)%s', time_expr, filt)
                     ELSE format('personalize.windowed_agg(%s)%s', time_expr,
                                 CASE WHEN filt = '' THEN format(' FILTER (WHERE %s IS NOT NULL)', ts.value_expr)
                                      ELSE format(' FILTER (WHERE %s = ANY (%L::text[]) AND %s IS NOT NULL)', type_expr, tr.event_types, ts.value_expr) END) END
            WHEN 'windowed_sum' THEN format('personalize.windowed_agg(%s, personalize._field_float8(%s))%s', time_expr, ts.value_expr, filt)
            WHEN 'distinct' THEN format('personalize.distinct_agg(%s, %s)%s', ts.value_expr, tr.hll_precision, filt)
            WHEN 'session' THEN format('personalize.session_agg(%s, %s, %s, %L::interval)%s', time_expr, ts.value_expr,
                                       coalesce(ts.item_expr, 'NULL::text'), tr.gap, filt)
        END;
        states := format(E'personalize.profile_set(%s,\n        %s, %s)', states, tr.id, agg);
    END LOOP;
    -- the rows the stream takes as events, and no other: a finite time;
    -- identifiers, and the values of every trait whose event types the row
    -- passes, no longer than personalize.max_value_bytes (the stream keeps
    -- the others as dead letters, and so does the rebuild, counting them in
    -- a scan of their own; an ERROR of an aggregate on them would stop the
    -- whole rebuild)
    cond := format('%s IS NOT NULL AND isfinite(%1$s)', time_expr);
    SELECT cond || coalesce(string_agg(format(' AND coalesce(octet_length(%s), 0) <= %s',
                                              personalize._column_text_sql(s.relation, si.column_name), max_bytes), ''), '')
      INTO cond FROM personalize.source_identifiers si WHERE si.source_id = s.id;
    -- json (not jsonb) documents read by key nest at most 1000 levels deep
    SELECT cond || coalesce(string_agg(DISTINCT format(' AND (e.%I IS NULL OR personalize._json_depth_ok(e.%1$I))', sf.column_name), ''), '')
      INTO cond
      FROM personalize.source_fields sf JOIN pg_attribute a ON a.attrelid = s.relation AND a.attname = sf.column_name
     WHERE sf.source_id = s.id AND sf.json_key IS NOT NULL AND a.atttypid = 'json'::regtype;
    FOR tr IN SELECT * FROM personalize.traits t ORDER BY t.id LOOP
        SELECT * INTO ts FROM personalize._trait_sources(tr.id) x WHERE x.source_id = s.id;
        CONTINUE WHEN NOT FOUND OR (ts.value_expr IS NULL AND ts.item_expr IS NULL);
        cond := cond || format(' AND (%s coalesce(octet_length(%s), 0) <= %s AND coalesce(octet_length(%s), 0) <= %s)',
                               CASE WHEN tr.event_types IS NOT NULL
                                    THEN format('%s IS NULL OR NOT %1$s = ANY (%L::text[]) OR', type_expr, tr.event_types) ELSE '' END,
                               coalesce(ts.value_expr, 'NULL'), max_bytes, coalesce(ts.item_expr, 'NULL'), max_bytes);
    END LOOP;
    -- a partitioned table reads its partitions, as the stream does; a
    -- table's inheritance children are not read (the stream sees only its
    -- own inserts)
    IF refused THEN
        RETURN format(E'SELECT %s AS key, %s AS source_id, count(*) AS refused\n'
                      '  FROM %s%s AS e\n WHERE NOT coalesce(%s, false)\n GROUP BY %s',
                      key_expr, s.id,
                      CASE WHEN (SELECT c.relkind FROM pg_class c WHERE c.oid = s.relation) = 'p' THEN '' ELSE 'ONLY ' END,
                      s.relation, cond, id_cols);
    END IF;
    RETURN format(E'SELECT %s AS key, min(%s) AS t0, max(%s) AS t1,\n       %s AS states, %s AS source_id, count(*) AS events\n'
                  '  FROM %s%s AS e\n WHERE %s\n GROUP BY %s',
                  key_expr, time_expr, time_expr, states, s.id,
                  CASE WHEN (SELECT c.relkind FROM pg_class c WHERE c.oid = s.relation) = 'p' THEN '' ELSE 'ONLY ' END,
                  s.relation, cond, id_cols);
END $$;

-- identify(jsonb) for every event key an open cursor returns, in its
-- order: rebuild()'s identity resolution (src/identity_batch.c).
CREATE FUNCTION _identify_keys(keys refcursor) RETURNS bigint
    AS 'MODULE_PATHNAME', 'pz_identify_keys' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION _identify_keys(refcursor) IS
    'identify(jsonb) for every event key (one jsonb column) the open cursor returns, in its order, with the same profiles, ids, merge log and refused links: keys whose identifiers are all new to the graph are resolved in memory (up to maintenance_work_mem) and written together.  Returns the number of keys.';
REVOKE EXECUTE ON FUNCTION _identify_keys(refcursor) FROM PUBLIC;

-- The engine of rebuild() and of the backfills:
--   only_profile: rebuild this profile only (NULL: every profile);
--   trait_ids: replace only these traits' states (NULL: all of them);
--   only_source: fold this source's events into the profiles as they are
--                (a backfill of a new source; NULL: rebuild from every source).
-- Steps (docs/profiles.md): 1. each source's events GROUP BY their
-- identifiers, into partial states per event key, in one statement that may
-- run in parallel; 2. the keys' identifiers, normalized; 3. identify() for
-- keys that hold an identifier new to the graph, in event-time order (in
-- memory, by _identify_keys, where they hold only new ones); 4.
-- each key to the profile of its best identifier; 5. the partial states
-- merged per profile; 6. each profile written once.
CREATE FUNCTION _rebuild_profiles(only_profile bigint, trait_ids integer[], only_source integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src record;
    parts text[] := '{}';
    refused_parts text[] := '{}';
    read_sources integer[] := '{}';
    new_keys refcursor;
    n bigint;
    strip text := 'p.states';
    tid integer;
    problem text;
    skipped integer := 0;
    broken record;
    err_state text;
    err_message text;
    err_detail text;
    err_hint text;
BEGIN
    -- one rebuild at a time: two would each write every profile
    PERFORM personalize._rebuild_lock();
    IF only_source IS NULL THEN
        PERFORM personalize._quiesce(NULL, 'rebuild', true);
    ELSE
        PERFORM personalize._quiesce(ARRAY[only_source], 'register_source', false);
    END IF;
    FOR src IN SELECT s.* FROM personalize.sources s
                WHERE only_source IS NULL OR s.id = only_source ORDER BY s.id LOOP
        -- a trait's backfill reads only the sources the trait reads
        CONTINUE WHEN trait_ids IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM unnest(trait_ids) t(id), personalize._trait_sources(t.id) ts
                                   WHERE ts.source_id = src.id);
        -- read with the rights of the role that registered it, as the stream,
        -- and only as registered (checked after _quiesce locked it)
        problem := coalesce(personalize._source_shape_problem(src.id),
                            personalize._source_read_problem(src.relation, src.owner, personalize._source_columns(src.id, false)));
        IF problem IS NOT NULL THEN
            RAISE WARNING 'rebuild: source % is not read: %', src.relation, problem
                USING HINT = 'Its rows are left out of the profiles until its owner may read them again; see personalize.dead_letters.';
            INSERT INTO personalize.dead_letters (source, applied, events, reason)
            VALUES (src.relation, false, 0, format('%s: rebuild() did not read the source', problem));
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        parts := parts || personalize._source_part_sql(src.id, trait_ids);
        refused_parts := refused_parts || personalize._source_part_sql(src.id, NULL, true);
        read_sources := read_sources || src.id;
    END LOOP;
    IF cardinality(parts) = 0 THEN
        IF skipped = 0 THEN
            RETURN 0;  -- no source: nothing to rebuild from
        END IF;
        -- every source was left out: the profiles keep nothing of them
        parts := ARRAY['SELECT NULL::jsonb AS key, NULL::timestamptz AS t0, NULL::timestamptz AS t1, '
                       '''{}''::personalize.profile AS states, 0 AS source_id, 0::bigint AS events WHERE false'];
    END IF;

    -- 1. partial states per event key.  An ERROR here (a trait's parameters
    --    written by hand past add_trait's checks, say) names the trait and
    --    the source it reads, not the SQL generated for them.
    BEGIN
        EXECUTE E'CREATE TEMP TABLE pz_rebuild_part ON COMMIT DROP AS\n'
                || array_to_string(parts, E'\nUNION ALL\n');
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
                                err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
        err_message := format('rebuild: %s cannot be read: %s',
                              coalesce(personalize._rebuild_culprit(trait_ids, read_sources), 'a source'), err_message);
        err_hint := coalesce(nullif(err_hint, ''), 'Correct the trait with personalize.alter_trait(), or the source''s rows.');
        IF coalesce(err_detail, '') = '' THEN
            RAISE EXCEPTION USING ERRCODE = err_state, MESSAGE = err_message, HINT = err_hint;
        END IF;
        RAISE EXCEPTION USING ERRCODE = err_state, MESSAGE = err_message, DETAIL = err_detail, HINT = err_hint;
    END;
    -- 1a. rows that are no events are left out, each a dead letter, as in the
    --     stream: no time, an infinite time, an identifier or a value longer
    --     than personalize.max_value_bytes (refused), no identifier at all
    --     (written by full rebuilds and source backfills; a trait's backfill
    --     or one profile's rebuild reads rows these have told of already)
    IF trait_ids IS NULL AND only_profile IS NULL AND cardinality(refused_parts) > 0 THEN
        EXECUTE E'INSERT INTO personalize.dead_letters (source, applied, events, reason, event)\n'
                'SELECT s.relation, false, r.refused, ''rebuild() left out rows that are no events: no time, '
                'an infinite time, or an identifier or a value longer than personalize.max_value_bytes'', r.key\n'
                '  FROM (' || array_to_string(refused_parts, E'\nUNION ALL\n') || E') r\n'
                '  JOIN personalize.sources s ON s.id = r.source_id';
    END IF;
    IF trait_ids IS NULL AND only_profile IS NULL THEN
        INSERT INTO personalize.dead_letters (source, applied, events, reason, event)
        SELECT s.relation, false, p.events, 'the event has no identifier (every identifier column is NULL)', p.key
          FROM pg_temp.pz_rebuild_part p JOIN personalize.sources s ON s.id = p.source_id
         WHERE jsonb_strip_nulls(p.key) = '{}'::jsonb;
    END IF;
    DELETE FROM pg_temp.pz_rebuild_part p WHERE jsonb_strip_nulls(p.key) = '{}'::jsonb;
    -- 1b. identifiers of a namespace that cannot normalize (its normalizer
    --     dropped, broken by hand, or not executable by its owner): their
    --     events are dead letters, as in the stream, and the rest goes on
    FOR broken IN SELECT n.name, personalize._namespace_problem(n.name) AS problem
                    FROM personalize.namespaces n ORDER BY n.id LOOP
        CONTINUE WHEN broken.problem IS NULL;
        INSERT INTO personalize.dead_letters (source, applied, events, reason, event)
        SELECT s.relation, false, p.events, 'resolving its identifiers failed: ' || broken.problem, p.key
          FROM pg_temp.pz_rebuild_part p JOIN personalize.sources s ON s.id = p.source_id
         WHERE p.key ->> broken.name IS NOT NULL;
        DELETE FROM pg_temp.pz_rebuild_part p WHERE p.key ->> broken.name IS NOT NULL;
    END LOOP;
    CREATE TEMP TABLE pz_rebuild_key ON COMMIT DROP AS
    SELECT row_number() OVER () AS key_id, key, t0
      FROM (SELECT key, min(t0) AS t0 FROM pg_temp.pz_rebuild_part GROUP BY key) k;
    -- 2. the keys' usable identifiers, normalized (blocked and unusable ones
    --    drop out).  A normalizer that raises on a value makes its key's
    --    events dead letters, as in the stream, and the rest goes on.
    CREATE TEMP TABLE pz_rebuild_id ON COMMIT DROP AS
    SELECT k.key_id, k.key, ns.id AS namespace_id, ns.priority, ns.name,
           n.normalized COLLATE "C" AS value, n.problem AS norm_problem
      FROM pg_temp.pz_rebuild_key k, jsonb_each_text(k.key) j
      JOIN personalize.namespaces ns ON ns.name = j.key,
           LATERAL personalize._normalize_checked(ns.name, j.value) n
     WHERE j.value IS NOT NULL;
    IF EXISTS (SELECT 1 FROM pg_temp.pz_rebuild_id x WHERE x.norm_problem IS NOT NULL) THEN
        INSERT INTO personalize.dead_letters (source, applied, events, reason, event)
        SELECT s.relation, false, p.events, 'resolving its identifiers failed: ' || bad.norm_problem, p.key
          FROM (SELECT DISTINCT ON (x.key) x.key, x.norm_problem FROM pg_temp.pz_rebuild_id x
                 WHERE x.norm_problem IS NOT NULL ORDER BY x.key, x.name) bad
          JOIN pg_temp.pz_rebuild_part p ON p.key = bad.key
          JOIN personalize.sources s ON s.id = p.source_id;
        DELETE FROM pg_temp.pz_rebuild_part p
         WHERE p.key IN (SELECT x.key FROM pg_temp.pz_rebuild_id x WHERE x.norm_problem IS NOT NULL);
        DELETE FROM pg_temp.pz_rebuild_key k
         WHERE k.key IN (SELECT x.key FROM pg_temp.pz_rebuild_id x WHERE x.norm_problem IS NOT NULL);
        DELETE FROM pg_temp.pz_rebuild_id i
         WHERE i.key IN (SELECT x.key FROM pg_temp.pz_rebuild_id x WHERE x.norm_problem IS NOT NULL);
    END IF;
    DELETE FROM pg_temp.pz_rebuild_id WHERE value IS NULL;
    ANALYZE pg_temp.pz_rebuild_id;
    -- keys none of whose identifiers is usable (blocked, or nothing to the
    -- normalizer): their events are dead letters, as in the stream
    IF trait_ids IS NULL AND only_profile IS NULL THEN
        INSERT INTO personalize.dead_letters (source, applied, events, reason, event)
        SELECT s.relation, false, p.events,
               'no usable identifier: every identifier is NULL, blocked, or not usable by its namespace''s normalizer', p.key
          FROM pg_temp.pz_rebuild_part p JOIN personalize.sources s ON s.id = p.source_id
         WHERE NOT EXISTS (SELECT 1 FROM pg_temp.pz_rebuild_id i WHERE i.key = p.key);
    END IF;
    -- 3. identity resolution: a key with an identifier the graph has not
    --    seen links its identifiers, in the order of first events, as
    --    identify() one key after another would (_identify_keys: keys whose
    --    identifiers are all new are resolved in memory, in one pass).
    --    Identifiers the graph knows are never linked again here, so splits
    --    and refused links stand.
    OPEN new_keys FOR
        SELECT rk.key FROM pg_temp.pz_rebuild_key rk
         WHERE EXISTS (SELECT 1 FROM pg_temp.pz_rebuild_id i
                        WHERE i.key = rk.key
                          AND NOT EXISTS (SELECT 1 FROM personalize.identities x
                                           WHERE x.namespace_id = i.namespace_id AND x.value = i.value))
         ORDER BY rk.t0, rk.key;
    PERFORM personalize._identify_keys(new_keys);
    CLOSE new_keys;
    -- 4. each key's events go to the profile of its best identifier
    --    (sorted by the key's number: comparing jsonb keys costs more)
    CREATE TEMP TABLE pz_rebuild_key_profile ON COMMIT DROP AS
    SELECT DISTINCT ON (i.key_id) i.key, x.profile_id
      FROM pg_temp.pz_rebuild_id i
      JOIN personalize.identities x ON x.namespace_id = i.namespace_id AND x.value = i.value
     ORDER BY i.key_id, i.priority DESC, i.name COLLATE "C", i.value COLLATE "C";
    ANALYZE pg_temp.pz_rebuild_key_profile;
    ANALYZE pg_temp.pz_rebuild_part;

    -- 5. the partial states merged per profile
    CREATE TEMP TABLE pz_rebuilt ON COMMIT DROP AS
    SELECT k.profile_id, min(pt.t0) AS first_seen, max(pt.t1) AS last_seen,
           personalize.merge_agg(pt.states) AS states
      FROM pg_temp.pz_rebuild_part pt JOIN pg_temp.pz_rebuild_key_profile k ON k.key = pt.key
     WHERE only_profile IS NULL OR k.profile_id = only_profile
     GROUP BY k.profile_id;
    CREATE UNIQUE INDEX ON pg_temp.pz_rebuilt (profile_id);
    ANALYZE pg_temp.pz_rebuilt;

    -- 6. write each profile once
    IF only_source IS NOT NULL THEN
        UPDATE personalize.profiles p
           SET states = personalize.profile_merge(p.states, r.states),
               first_seen = least(p.first_seen, r.first_seen),
               last_seen = greatest(p.last_seen, r.last_seen),
               updated_at = now()
          FROM pg_temp.pz_rebuilt r
         WHERE p.id = r.profile_id;
    ELSIF trait_ids IS NOT NULL THEN
        FOREACH tid IN ARRAY trait_ids LOOP
            strip := format('personalize.profile_remove(%s, %s)', strip, tid);
        END LOOP;
        EXECUTE format('UPDATE personalize.profiles p SET states = personalize.profile_merge(%s, r.states), updated_at = now()
                          FROM pg_temp.pz_rebuilt r
                         WHERE p.id = r.profile_id', strip);
        -- profiles without events for these traits keep none of their old states
        EXECUTE format('UPDATE personalize.profiles p SET states = %s, updated_at = now()
                         WHERE NOT personalize.profile_eq(p.states, %1$s)
                           AND NOT EXISTS (SELECT 1 FROM pg_temp.pz_rebuilt r WHERE r.profile_id = p.id)
                           AND ($1 IS NULL OR p.id = $1)', strip) USING only_profile;
    ELSE
        UPDATE personalize.profiles p
           SET states = coalesce(r.states, '{}'), first_seen = r.first_seen, last_seen = r.last_seen,
               updated_at = now(), rebuild_pending = false
          FROM personalize.profiles p2 LEFT JOIN pg_temp.pz_rebuilt r ON r.profile_id = p2.id
         WHERE p.id = p2.id AND (only_profile IS NULL OR p.id = only_profile);
    END IF;
    SELECT count(*) INTO n FROM pg_temp.pz_rebuilt;
    DROP TABLE pg_temp.pz_rebuild_part, pg_temp.pz_rebuild_key, pg_temp.pz_rebuild_id,
               pg_temp.pz_rebuild_key_profile, pg_temp.pz_rebuilt;
    RETURN n;
END $$;
COMMENT ON FUNCTION _rebuild_profiles(bigint, integer[], integer) IS
    'The engine behind rebuild() and the backfills (see _rebuild): writes the profiles.';

CREATE FUNCTION rebuild() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM personalize._require_admin('rebuild profiles');
    RETURN personalize._rebuild(NULL, NULL, NULL);
END $$;
COMMENT ON FUNCTION rebuild() IS
    'Rebuild every profile''s trait states, first and last seen from the sources: identifiers new to the graph are linked first (in event-time order), then the trait aggregates run per profile.  Returns the number of profiles with events.';

CREATE FUNCTION rebuild(profile_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM personalize._require_admin('rebuild a profile');
    IF profile_id IS NULL THEN
        RAISE EXCEPTION 'rebuild: profile_id must not be NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Call personalize.rebuild() without arguments to rebuild every profile.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM personalize.profiles p WHERE p.id = rebuild.profile_id) THEN
        RAISE EXCEPTION 'rebuild: no profile %', profile_id USING ERRCODE = 'undefined_object',
            HINT = 'Find a profile with personalize.resolve(namespace, value).';
    END IF;
    RETURN personalize._rebuild(profile_id, NULL, NULL);
END $$;
COMMENT ON FUNCTION rebuild(bigint) IS
    'Rebuild one profile from the sources (e.g. after split()).  Reads every source in full.';

-- ===========================================================================
-- Reading profiles
-- ===========================================================================

-- get_profile reads the profile row by its primary key and decodes it with
-- profile_columns()' code, without running a query (src/profile_read.c);
-- the view's columns are cached per backend and reloaded when the view is
-- regenerated.
CREATE FUNCTION get_profile(profile_id bigint) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'pz_get_profile_by_id' LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION get_profile(bigint) IS
    'One profile as jsonb: the columns of personalize.profile_view, windowed traits evaluated against now().  NULL if there is no such profile.';

CREATE FUNCTION get_profile(namespace text, value text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'pz_get_profile' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION get_profile(text, text) IS
    'The profile of an identifier as jsonb (see get_profile(bigint)); NULL if the identifier was never seen.';

CREATE FUNCTION session_intent(namespace text, value text) RETURNS jsonb
LANGUAGE sql STABLE
RETURN (SELECT jsonb_object_agg(t.name, personalize.session_info(personalize.profile_get(p.states, t.id, NULL::personalize.session_state)))
          FROM personalize.profiles p, personalize.traits t
         WHERE p.id = personalize.resolve(namespace, value) AND t.kind = 'session'
           AND personalize.profile_get(p.states, t.id, NULL::personalize.session_state) IS NOT NULL);
COMMENT ON FUNCTION session_intent(text, text) IS
    'The current session of every session trait of an identifier''s profile, as {"trait": session_info}: the intent of an anonymous visitor before login, kept by the known profile after it.';

-- ===========================================================================
-- Privileges
-- ===========================================================================

REVOKE ALL ON sources, source_identifiers, source_fields, traits FROM PUBLIC;
GRANT SELECT ON sources, source_identifiers, source_fields, traits TO personalize_reader;
GRANT SELECT ON sources, source_identifiers, source_fields, traits TO personalize_admin;
REVOKE ALL ON SEQUENCE sources_id_seq, traits_id_seq FROM PUBLIC;
-- configuration changes and rebuilds are for personalize_admin: the
-- functions check the table grants themselves, with a hint
REVOKE EXECUTE ON FUNCTION register_source(regclass, jsonb, name, text, name, jsonb, boolean),
    unregister_source(regclass),
    add_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean),
    alter_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean, boolean, boolean),
    drop_trait(text), rebuild(), rebuild(bigint), _rebuild_profiles(bigint, integer[], integer),
    _regenerate_view()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION register_source(regclass, jsonb, name, text, name, jsonb, boolean),
    unregister_source(regclass),
    add_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean),
    alter_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean, boolean, boolean),
    drop_trait(text), rebuild(), rebuild(bigint), _rebuild_profiles(bigint, integer[], integer),
    _regenerate_view()
    TO personalize_admin;

-- ###########################################################################
-- Streaming (since 0.4.0)
-- ###########################################################################
--
-- The library ships a logical decoding output plugin (src/decoder.c) and a
-- background worker (src/worker.c) that streams every committed insert into
-- a registered source into its profile.  The plugin reads what to decode
-- from two small tables below, kept in step with the configuration by
-- triggers and marked user_catalog_table so that logical decoding reads
-- them as of each decoded transaction: a row is an event exactly when its
-- transaction commits after the source's registration (docs/streaming.md).


-- ===========================================================================
-- What the output plugin decodes
-- ===========================================================================

CREATE TABLE stream_sources (
    source_id     integer PRIMARY KEY,
    relation      regclass NOT NULL,
    time_column   name NOT NULL,
    type_column   name,
    type_constant text,
    id_columns    name[] NOT NULL,
    id_namespaces integer[] NOT NULL,
    owner         oid
) WITH (user_catalog_table = true);
COMMENT ON TABLE stream_sources IS
    'Derived from sources and source_identifiers for the output plugin, which reads it as of each decoded transaction.  Do not change it: the configuration functions keep it.';

-- One row per (trait, source it reads).  value_column NULL: the kind takes
-- no value (count and windowed_count without a field count every event).
CREATE TABLE stream_traits (
    trait_id      integer NOT NULL,
    source_id     integer NOT NULL,
    kind          text NOT NULL,
    n             integer,
    half_life_us  bigint,
    gap_us        bigint,
    hll_precision integer,
    event_types   text[],
    value_column  name,
    value_key     text,
    item_column   name,
    item_key      text,
    PRIMARY KEY (trait_id, source_id)
) WITH (user_catalog_table = true);
COMMENT ON TABLE stream_traits IS
    'Derived from traits and the sources'' fields for the output plugin: which events feed which trait state, read from which column or jsonb key.  Do not change it: the configuration functions keep it.';

-- (Not dumped: restoring the configuration tables fires the triggers below,
-- which fill them again.)

-- A field of a source: its column, and the jsonb key within it (NULL: the
-- column itself).  As _field_expr: a field the source does not map is the
-- column of that name.
CREATE FUNCTION _field_ref(source_id integer, field text, OUT column_name name, OUT json_key text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rel regclass;
BEGIN
    SELECT sf.column_name, sf.json_key INTO column_name, json_key
      FROM personalize.source_fields sf WHERE sf.source_id = _field_ref.source_id AND sf.field = _field_ref.field;
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT relation INTO rel FROM personalize.sources s WHERE s.id = _field_ref.source_id;
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = field
                  AND a.attnum > 0 AND NOT a.attisdropped) THEN
        column_name := field;
    END IF;
END $$;

-- Rewrite stream_sources and stream_traits from the configuration.  Runs
-- as the extension's owner from statement triggers on the configuration
-- tables, so every change of sources, fields and traits reaches the plugin
-- in the same transaction.
CREATE FUNCTION _stream_refresh() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM personalize.stream_traits;
    DELETE FROM personalize.stream_sources;
    INSERT INTO personalize.stream_sources
    SELECT s.id, s.relation, s.event_time_column, s.event_type_column, s.event_type,
           coalesce(array_agg(si.column_name ORDER BY si.namespace_id) FILTER (WHERE si.column_name IS NOT NULL), '{}'),
           coalesce(array_agg(si.namespace_id ORDER BY si.namespace_id) FILTER (WHERE si.column_name IS NOT NULL), '{}'),
           s.owner
      FROM personalize.sources s LEFT JOIN personalize.source_identifiers si ON si.source_id = s.id
     WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.relation)
     GROUP BY s.id;
    INSERT INTO personalize.stream_traits
    SELECT t.id, ts.source_id, t.kind, t.n,
           (extract(epoch FROM t.half_life) * 1000000)::bigint,
           (extract(epoch FROM t.gap) * 1000000)::bigint,
           t.hll_precision, t.event_types,
           v.column_name, v.json_key, i.column_name, i.json_key
      FROM personalize.traits t
     CROSS JOIN LATERAL personalize._trait_sources(t.id) ts
      LEFT JOIN LATERAL personalize._field_ref(ts.source_id, t.field) v ON t.field IS NOT NULL
      LEFT JOIN LATERAL personalize._field_ref(ts.source_id, t.item_field) i ON t.item_field IS NOT NULL
     WHERE ts.source_id IN (SELECT source_id FROM personalize.stream_sources);
    RETURN NULL;
END $$;

CREATE TRIGGER stream_refresh AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sources
    FOR EACH STATEMENT EXECUTE FUNCTION _stream_refresh();
CREATE TRIGGER stream_refresh AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON source_identifiers
    FOR EACH STATEMENT EXECUTE FUNCTION _stream_refresh();
CREATE TRIGGER stream_refresh AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON source_fields
    FOR EACH STATEMENT EXECUTE FUNCTION _stream_refresh();
CREATE TRIGGER stream_refresh AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON traits
    FOR EACH STATEMENT EXECUTE FUNCTION _stream_refresh();


-- ===========================================================================
-- Dead letters
-- ===========================================================================

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    source      regclass,
    commit_lsn  pg_lsn,
    committed_at timestamptz,
    applied     boolean NOT NULL,
    events      bigint NOT NULL DEFAULT 1,
    reason      text NOT NULL,
    event       jsonb
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
COMMENT ON TABLE dead_letters IS
    'Events the worker could not apply (applied = false: no usable identifier, no event time, a value too long, a mapped column dropped), or applied without one value (applied = true: a value that is not a number for a numeric trait).  event holds the mapped columns as text; events counts the rows one entry stands for.';
SELECT pg_catalog.pg_extension_config_dump('dead_letters', '');

-- ===========================================================================
-- The worker
-- ===========================================================================

CREATE FUNCTION _worker_status(
    OUT database name, OUT pid integer, OUT state text, OUT paused boolean,
    OUT started_at timestamptz, OUT events_applied bigint, OUT events_per_second double precision,
    OUT transactions bigint, OUT batches bigint, OUT profiles_written bigint,
    OUT merges bigint, OUT refused_links bigint, OUT dead_letters bigint,
    OUT updates_ignored bigint, OUT deletes_ignored bigint, OUT truncates_ignored bigint,
    OUT applied_lsn pg_lsn, OUT decoded_lsn pg_lsn, OUT last_commit_at timestamptz,
    OUT last_applied_at timestamptz, OUT commit_to_apply_ms double precision,
    OUT memory_bytes bigint, OUT last_error text, OUT last_error_at timestamptz,
    OUT restarts bigint, OUT retry_at timestamptz, OUT audience_changes bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pz_worker_status'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION _worker_status() IS
    'The streaming workers'' shared-memory figures; personalize.worker_status shows them.';

CREATE VIEW worker_status AS
SELECT w.database, w.pid, w.state, w.paused, w.started_at,
       w.events_applied, round(w.events_per_second::numeric, 1) AS events_per_second,
       w.transactions, w.batches, w.profiles_written, w.merges, w.refused_links, w.dead_letters,
       w.updates_ignored, w.deletes_ignored, w.truncates_ignored,
       w.applied_lsn, w.decoded_lsn,
       CASE WHEN w.decoded_lsn IS NOT NULL
            THEN greatest(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_flush_lsn(), w.decoded_lsn), 0)::bigint
       END AS lag_bytes,
       round(w.commit_to_apply_ms::numeric, 3) AS lag_ms,
       w.last_commit_at, w.last_applied_at, w.memory_bytes, w.last_error, w.last_error_at,
       w.restarts, w.retry_at, w.audience_changes
  FROM personalize._worker_status() w;
COMMENT ON VIEW worker_status IS
    'One row per streaming worker: state, events applied and per second, applied and decoded LSN, lag in bytes (WAL flushed but not yet decoded and applied) and in ms (commit to apply, last batch), profiles written, merges, refused links, dead letters, changes that are not events, the last error and when, how often an error stopped the worker (restarts), when a worker waiting to retry tries again, and the audience entries and exits it wrote (audience_changes).';

CREATE FUNCTION wait_for_apply(timeout interval DEFAULT '60 seconds') RETURNS boolean
AS 'MODULE_PATHNAME', 'pz_wait_for_apply'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION wait_for_apply(interval) IS
    'Wait until this database''s worker has applied every transaction committed before the call; false if timeout passed first.  Call it after committing, not inside the transaction that wrote the events.';

CREATE FUNCTION worker_start() RETURNS boolean
AS 'MODULE_PATHNAME', 'pz_worker_start'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION worker_start() IS
    'Resume this database''s worker after worker_stop(): it applies what was committed meanwhile.  false if it was not stopped.';

CREATE FUNCTION worker_stop() RETURNS boolean
AS 'MODULE_PATHNAME', 'pz_worker_stop'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION worker_stop() IS
    'Pause this database''s worker after its current batch.  The slot keeps the WAL from there until worker_start().  Until a server restart.';

CREATE FUNCTION worker_restart() RETURNS boolean
AS 'MODULE_PATHNAME', 'pz_worker_restart'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION worker_restart() IS
    'Terminate this database''s worker; the postmaster starts it again at once, and it resumes after the last applied transaction.';

-- Used by rebuilds: ERROR unless the worker has applied everything
-- committed so far (or no worker streams this database).
CREATE FUNCTION _stream_wait(what text) RETURNS void
AS 'MODULE_PATHNAME', 'pz_stream_wait'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

-- Render one message of the output plugin as jsonb (tests, debugging).
CREATE FUNCTION decode_message(bytea) RETURNS jsonb
AS 'MODULE_PATHNAME', 'pz_decode_message'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION decode_message(bytea) IS
    'One message of the personalize output plugin (pg_logical_slot_peek_binary_changes(slot, NULL, NULL)), as jsonb.';

-- ===========================================================================
-- Rebuilds meet the stream at one point
-- ===========================================================================


-- Hold back writers of these sources and (wait_for_stream) wait until the
-- worker has applied everything committed to them: what a rebuild then
-- reads and replaces is exactly what the stream has applied, and every
-- later insert commits after the rebuild and reaches the profiles through
-- the stream.  It runs as the extension's owner: SHARE locks need more than
-- the SELECT an admin has on the sources, and it takes nothing but them.
CREATE FUNCTION _quiesce(source_ids integer[], what text, wait_for_stream boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rels text;
    deadline timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION '%: needs READ COMMITTED isolation, not %', what, current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Its snapshot must be taken after it has locked the sources, or rows committed meanwhile would be missed.';
    END IF;
    SELECT string_agg(s.relation::text, ', ' ORDER BY s.id) INTO rels
      FROM personalize.sources s
     WHERE (source_ids IS NULL OR s.id = ANY (source_ids))
       AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.relation);
    IF rels IS NOT NULL THEN
        -- all at once or none: never wait for one while holding another, so
        -- a writer that writes several sources in one transaction cannot
        -- deadlock with us
        deadline := clock_timestamp()
                    + coalesce(current_setting('personalize.apply_wait_timeout', true), '60s')::interval;
        LOOP
            BEGIN
                EXECUTE format('LOCK TABLE %s IN SHARE MODE NOWAIT', rels);
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                IF clock_timestamp() > deadline THEN
                    RAISE EXCEPTION '%: could not lock the sources % within personalize.apply_wait_timeout', what, rels
                        USING ERRCODE = 'lock_not_available',
                              HINT = 'Long transactions write to them; retry, or raise personalize.apply_wait_timeout.';
                END IF;
                PERFORM pg_sleep(0.002);
            END;
        END LOOP;
    END IF;
    IF wait_for_stream THEN
        PERFORM personalize._stream_wait(what);
    END IF;
END $$;


-- ===========================================================================
-- Privileges
-- ===========================================================================

REVOKE ALL ON stream_sources, stream_traits, dead_letters FROM PUBLIC;
GRANT SELECT ON stream_sources, stream_traits, dead_letters TO personalize_reader;
GRANT SELECT, DELETE ON dead_letters TO personalize_admin;
REVOKE ALL ON worker_status FROM PUBLIC;
GRANT SELECT ON worker_status TO personalize_reader, personalize_admin;
REVOKE EXECUTE ON FUNCTION _worker_status(), worker_start(), worker_stop(), worker_restart(), _stream_wait(text),
    _quiesce(integer[], text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _worker_status() TO personalize_reader, personalize_admin;
GRANT EXECUTE ON FUNCTION worker_start(), worker_stop(), worker_restart(), _stream_wait(text)
    TO personalize_admin;

-- ###########################################################################
-- A wait that holds no snapshot (since 0.5.0)
-- ###########################################################################
--
-- wait_for_apply() waits inside its statement's snapshot, whose xmin keeps
-- VACUUM and page pruning from removing the row versions that die
-- meanwhile, the worker's updates of the profiles among them.  The
-- procedure await_apply() releases CALL's snapshot before it waits.


CREATE PROCEDURE await_apply(timeout interval DEFAULT '60 seconds')
AS 'MODULE_PATHNAME', 'pz_await_apply'
LANGUAGE C;
COMMENT ON PROCEDURE await_apply(interval) IS
    'CALL it to wait until this database''s worker has applied every transaction committed before the call; an ERROR if timeout passes first.  Unlike wait_for_apply(), it holds no snapshot while it waits, so VACUUM and page pruning go on meanwhile.  A statement of its own, or in a DO block or procedure run outside a transaction block; not in REPEATABLE READ or SERIALIZABLE transactions.';

COMMENT ON FUNCTION wait_for_apply(interval) IS
    'Wait until this database''s worker has applied every transaction committed before the call; false if timeout passed first.  Call it after committing, not inside the transaction that wrote the events.  It waits inside its statement''s snapshot, which keeps VACUUM from removing what dies meanwhile: for long waits CALL await_apply().';

-- ###########################################################################
-- Trust boundaries (since 0.6.0)
-- ###########################################################################
--
-- No role gains a right through the extension:
-- * a namespace and a source record the role that configured them (owner);
--   a normalizer runs as its namespace's owner inside a security-restricted
--   operation, in every path (the worker, resolve(), rebuild()), and never
--   as the worker's bootstrap superuser;
-- * the configuration tables are written only by superusers and by the
--   configuration functions: those written in PL/pgSQL run as SECURITY
--   DEFINER implementations (_register_source, ...) behind a C entry
--   (pz_configure) that records the calling role;
-- * a source is read, by the stream and by rebuild(), only while its owner
--   may read every column taken from it and sees every row;
-- * no user's cast runs: a column whose cast to text is a user's function
--   is read through its type's output function, in both paths;
-- * unlogged tables (not in the WAL) cannot be sources; a table's
--   inheritance children are read by neither path.


-- ===========================================================================
-- Helpers
-- ===========================================================================

CREATE FUNCTION _configuring_role() RETURNS regrole
    AS 'MODULE_PATHNAME', 'pz_configuring_role' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION _configuring_role() IS
    'The role that called the configuration function under way (register_source, add_trait, ...), else the current user: the owner recorded for what it configures.';

CREATE FUNCTION _source_read_problem(relation regclass, role regrole, columns name[]) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_source_read_problem_sql' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _source_read_problem(regclass, regrole, name[]) IS
    'Why role may not read these columns of relation as a source (no SELECT on one, or row-level security applies to it), or NULL.  The same check as the stream''s.';

CREATE FUNCTION _column_text_sql(relation regclass, column_name name) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_column_text_sql' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _column_text_sql(regclass, name) IS
    'The SQL expression that reads a column of the row e as text the way the stream does: ::text, or the type''s output function where the cast to text is a user''s function.';

-- The columns of a source the stream reads (every_mapped: and every column
-- the source maps, for the registration's check).
CREATE FUNCTION _source_columns(source_id integer, every_mapped boolean) RETURNS name[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
RETURN (SELECT coalesce(array_agg(DISTINCT c.col) FILTER (WHERE c.col IS NOT NULL), '{}')
          FROM (SELECT s.event_time_column AS col FROM personalize.sources s WHERE s.id = source_id
                UNION ALL
                SELECT s.event_type_column FROM personalize.sources s WHERE s.id = source_id
                UNION ALL
                SELECT si.column_name FROM personalize.source_identifiers si WHERE si.source_id = _source_columns.source_id
                UNION ALL
                SELECT sf.column_name FROM personalize.source_fields sf
                 WHERE every_mapped AND sf.source_id = _source_columns.source_id
                UNION ALL
                SELECT f.column_name
                  FROM personalize.traits t
                 CROSS JOIN LATERAL personalize._trait_sources(t.id) ts
                 CROSS JOIN LATERAL (SELECT v.column_name FROM personalize._field_ref(ts.source_id, t.field) v WHERE t.field IS NOT NULL
                                     UNION ALL
                                     SELECT i.column_name FROM personalize._field_ref(ts.source_id, t.item_field) i WHERE t.item_field IS NOT NULL) f
                 WHERE ts.source_id = _source_columns.source_id) c);

-- ERROR unless role may read every column a trait takes from its sources.
CREATE FUNCTION _check_trait_access(trait_id integer, role regrole) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tr personalize.traits;
    s record;
    problem text;
BEGIN
    SELECT * INTO tr FROM personalize.traits t WHERE t.id = trait_id;
    FOR s IN SELECT src.relation,
                    ARRAY(SELECT v.column_name FROM personalize._field_ref(ts.source_id, tr.field) v WHERE tr.field IS NOT NULL
                          UNION ALL
                          SELECT i.column_name FROM personalize._field_ref(ts.source_id, tr.item_field) i WHERE tr.item_field IS NOT NULL) AS cols
               FROM personalize._trait_sources(trait_id) ts JOIN personalize.sources src ON src.id = ts.source_id LOOP
        problem := personalize._source_read_problem(s.relation, role, s.cols);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'trait %: %', tr.name, problem
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('A trait reads its sources with the rights of the role that defines it: GRANT SELECT ON %s TO %s, or restrict the trait with sources => ...', s.relation, role);
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION _namespace_problem(namespace text) RETURNS text
    AS 'MODULE_PATHNAME', 'pz_namespace_problem_sql' LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION _namespace_problem(text) IS
    'Why a namespace cannot normalize values (its normalizer dropped, of the wrong signature, or not executable by the namespace''s owner), or NULL.';

-- One rebuild at a time, on a lock of the extension's own: an advisory
-- lock, which any role can take and hold, would let anyone stall rebuilds
-- and the worker's first one.
CREATE FUNCTION _rebuild_lock() RETURNS void
    AS 'MODULE_PATHNAME', 'pz_rebuild_lock' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION _rebuild_lock() IS
    'Take the rebuild lock until the transaction ends (rebuilds each write every profile).';
REVOKE EXECUTE ON FUNCTION _rebuild_lock() FROM PUBLIC;

CREATE FUNCTION _refuse_in_restricted(action text) RETURNS void
    AS 'MODULE_PATHNAME', 'pz_refuse_in_restricted' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _refuse_in_restricted(text) IS
    'ERROR inside a security-restricted operation (a normalizer run for its owner): configuration and rebuilds are not for such code.';

CREATE FUNCTION _note_unstreamed() RETURNS void
    AS 'MODULE_PATHNAME', 'pz_note_unstreamed' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION _note_unstreamed() IS
    'A NOTICE, once per session, when no worker streams this database (register_source and add_trait call it).';

-- ERROR when a trait's field is in none of the sources it may read: a
-- misspelt field would otherwise build nothing, silently.  With no source
-- registered yet, a NOTICE.
CREATE FUNCTION _check_trait_field(trait_id integer) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tr personalize.traits;
    known text;
BEGIN
    SELECT * INTO tr FROM personalize.traits t WHERE t.id = trait_id;
    IF tr.field IS NULL OR EXISTS (SELECT 1 FROM personalize._trait_sources(trait_id)) THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM personalize.sources) THEN
        RAISE NOTICE 'trait %: no source is registered yet; it will read field % of the sources that have it', tr.name, quote_literal(tr.field);
        RETURN;
    END IF;
    SELECT string_agg(DISTINCT f, ', ' ORDER BY f) INTO known
      FROM (SELECT sf.field AS f FROM personalize.source_fields sf JOIN personalize.sources s ON s.id = sf.source_id
             WHERE tr.sources IS NULL OR s.relation = ANY (tr.sources)
            UNION
            SELECT a.attname::text FROM personalize.sources s JOIN pg_attribute a ON a.attrelid = s.relation
             WHERE (tr.sources IS NULL OR s.relation = ANY (tr.sources)) AND a.attnum > 0 AND NOT a.attisdropped) x;
    RAISE EXCEPTION 'trait %: no source has field %', tr.name, quote_literal(tr.field)
        USING ERRCODE = 'undefined_column',
              HINT = format('The fields and columns of its sources: %s.  Name the field in a source''s fields (register_source(..., fields => ...)), or use a column''s name.', known);
END $$;

-- A field's text as a number, read by the stream's C code (src/field.c): the
-- rebuild and the stream agree on which texts are numbers.
CREATE FUNCTION _field_number(value text) RETURNS numeric
    AS 'MODULE_PATHNAME', 'pz_field_number_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _field_number(text) IS
    'A field''s text as numeric, as the stream reads it (blanks, sign, digits with one point, an exponent within +-1000), or NULL if it is not a number.';
CREATE FUNCTION _field_float8(value text) RETURNS double precision
    AS 'MODULE_PATHNAME', 'pz_field_float8_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _field_float8(text) IS
    'A field''s text as float8, as the stream reads it for windowed sums, or NULL if it is not a number float8 can hold.';

CREATE FUNCTION _normalize_checked(namespace text, value text, OUT normalized text, OUT problem text)
    AS 'MODULE_PATHNAME', 'pz_normalize_checked' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION _normalize_checked(text, text) IS
    'normalize_identifier(), or, if the namespace''s normalizer raises an error on the value, NULL and the error (a user''s normalizer runs in a subtransaction for it).  rebuild() makes the keys of such values dead letters, as the stream does.';

-- Which trait of which source makes a rebuild's scan fail: each trait's
-- part, of the sources the rebuild read (checked), source by source, until
-- one fails (only after a failure, so its
-- cost does not matter).  NULL if none fails on its own.
CREATE FUNCTION _rebuild_culprit(trait_ids integer[], source_ids integer[]) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s record;
    t record;
    f record;
BEGIN
    FOR s IN SELECT src.* FROM personalize.sources src
              WHERE src.id = ANY (source_ids) ORDER BY src.id LOOP
        FOR t IN SELECT tr.* FROM personalize.traits tr
                  WHERE (trait_ids IS NULL OR tr.id = ANY (trait_ids))
                    AND EXISTS (SELECT 1 FROM personalize._trait_sources(tr.id) ts WHERE ts.source_id = s.id)
                  ORDER BY tr.id LOOP
            BEGIN
                -- count(x.states): the states must be computed, not planned away
                EXECUTE 'SELECT count(x.states) FROM (' || personalize._source_part_sql(s.id, ARRAY[t.id]) || ') x';
            EXCEPTION WHEN OTHERS THEN
                SELECT * INTO f FROM personalize._field_ref(s.id, t.field);
                RETURN format('trait %s (%s%s) of source %s', t.name, t.kind,
                              CASE WHEN f.column_name IS NOT NULL
                                   THEN format(', field %s: column %s%s', t.field, quote_ident(f.column_name),
                                               CASE WHEN f.json_key IS NOT NULL THEN format(' key %L', f.json_key) ELSE '' END)
                                   ELSE '' END,
                              s.relation);
            END;
        END LOOP;
    END LOOP;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION _rebuild_culprit(integer[], integer[]) IS
    'After a rebuild''s scan failed: the first trait and source whose scan fails on its own, as text, or NULL.';

-- Why a source cannot be read as registered any more (its table turned into
-- a view, its event time column of another type now, a json key read from a
-- column that is no json any more), or NULL.  rebuild() runs as the
-- extension's owner: reading a column of another type through a cast
-- would call the cast's function, which the table's owner may have written.
CREATE FUNCTION _source_shape_problem(source_id integer) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s personalize.sources;
    kind "char";
    t oid;
    f record;
BEGIN
    SELECT * INTO s FROM personalize.sources x WHERE x.id = source_id;
    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = s.relation;
    IF kind IS NULL OR kind NOT IN ('r', 'p') THEN
        RETURN format('%s is no table any more', s.relation);
    END IF;
    SELECT a.atttypid INTO t FROM pg_attribute a
     WHERE a.attrelid = s.relation AND a.attname = s.event_time_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF t IS NULL OR t NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RETURN format('event time column %s of %s is missing or of type %s now',
                      quote_ident(s.event_time_column), s.relation, coalesce(t::regtype::text, 'none'));
    END IF;
    FOR f IN SELECT sf.column_name, a.atttypid FROM personalize.source_fields sf
               LEFT JOIN pg_attribute a ON a.attrelid = s.relation AND a.attname = sf.column_name AND NOT a.attisdropped
              WHERE sf.source_id = s.id AND sf.json_key IS NOT NULL LOOP
        IF f.atttypid IS NULL OR f.atttypid NOT IN ('json'::regtype, 'jsonb'::regtype) THEN
            RETURN format('column %s of %s, whose keys are fields, is missing or of type %s now',
                          quote_ident(f.column_name), s.relation, coalesce(f.atttypid::regtype::text, 'none'));
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION _json_depth_ok(value json) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_json_depth_ok_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION _json_depth_ok(json) IS
    'Whether a json value nests at most 1000 levels deep (counted without parsing): deeper ones are no events, in the stream as in rebuild().';

-- A table whose inserts the stream sees as they are, or an ERROR that says
-- why it cannot be a source.
-- What kind of Citus table a relation is ('distributed', 'reference' or
-- 'local', as citus_tables says), or NULL: not one, or no Citus here.
CREATE FUNCTION _citus_table_kind(relation regclass) RETURNS text
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind text;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN NULL;
    END IF;
    -- (Citus's catalog is named only when it exists: EXECUTE)
    EXECUTE 'SELECT CASE WHEN p.partkey IS NOT NULL THEN ''distributed''
                         WHEN p.repmodel = ''t'' THEN ''reference''
                         WHEN p.colocationid = 0 THEN ''local''
                         ELSE ''distributed'' END
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
       INTO kind USING relation;
    RETURN kind;
END $$;
COMMENT ON FUNCTION _citus_table_kind(regclass) IS
    'The kind of Citus table a relation is (distributed, reference, local), or NULL: not one, or Citus is not installed.';

CREATE FUNCTION _check_source_kind(relation regclass) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c pg_class;
    citus_kind text;
BEGIN
    SELECT * INTO c FROM pg_class WHERE oid = relation;
    IF c.relpersistence = 't' THEN
        RAISE EXCEPTION 'register_source: % is a temporary table', relation
            USING ERRCODE = 'wrong_object_type', HINT = 'A source outlives the session: register a permanent table.';
    END IF;
    IF c.relpersistence = 'u' THEN
        RAISE EXCEPTION 'register_source: % is an unlogged table', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Its inserts are not written to the WAL, so the stream would never see them.',
                  HINT = format('Make it a logged table first: ALTER TABLE %s SET LOGGED.', relation);
    END IF;
    IF c.relkind = 'v' OR c.relkind = 'm' THEN
        RAISE EXCEPTION 'register_source: % is a view', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'A view holds no rows of its own: the stream sees inserts into tables.',
                  HINT = 'Register the table the events are written to.';
    END IF;
    IF c.relkind = 'f' THEN
        RAISE EXCEPTION 'register_source: % is a foreign table', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Its rows live in another server, whose inserts are not in this database''s WAL.',
                  HINT = 'Register the table the events are written to, on the server that holds it.';
    END IF;
    IF c.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'register_source: % is not a table', relation
            USING ERRCODE = 'wrong_object_type', HINT = 'Register the table the events are written to.';
    END IF;
    -- a Citus table's rows are in shards: a distributed table's are
    -- streamed by the nodes that hold them (docs/scale-out.md)
    citus_kind := personalize._citus_table_kind(relation);
    IF citus_kind = 'distributed' AND NOT personalize._citus_is_coordinator() THEN
        RAISE EXCEPTION 'register_source: % is a Citus distributed table, and this is not the coordinator', relation
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'The configuration lives on the coordinator, which sends it to every node.',
                  HINT = 'Register it on the coordinator.';
    END IF;
    IF citus_kind = 'distributed' AND NOT personalize._citus_cdc_everywhere() THEN
        RAISE EXCEPTION 'register_source: % is a Citus distributed table, and citus.enable_change_data_capture is off on a node', relation
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Citus marks its own copies of rows (shard moves, splits, rebalancing) only with it on; unmarked, the stream would count them as new events.',
                  HINT = 'Set citus.enable_change_data_capture = on in postgresql.conf on every node, reload, and register again.';
    END IF;
    IF citus_kind = 'distributed' AND personalize._citus_replicated(relation) THEN
        RAISE EXCEPTION 'register_source: % is a Citus distributed table whose shards have more than one placement', relation
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Every node with a placement of a shard would stream the same inserts: each event would count once per placement.',
                  HINT = 'Distribute it with citus.shard_replication_factor = 1.';
    END IF;
    IF citus_kind IS NOT NULL AND citus_kind <> 'distributed' THEN
        RAISE EXCEPTION 'register_source: % is a Citus % table', relation, citus_kind
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its inserts go to shards on every node or on the coordinator, which this release does not stream: its events would never reach a profile.',
                  HINT = 'Register a plain local table or a distributed table.';
    END IF;
    -- a partition's rows are its parent's events: the parent is the source
    IF c.relispartition THEN
        RAISE EXCEPTION 'register_source: % is a partition of %', relation,
                        (SELECT a::regclass FROM pg_partition_ancestors(relation) a
                          WHERE NOT (SELECT r.relispartition FROM pg_class r WHERE r.oid = a))
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Inserts into any partition, also one attached later, are events of the partitioned table.',
                  HINT = 'Register the partitioned table.';
    END IF;
    -- (a partition registered by 0.5.0, which allowed it, would count twice)
    IF c.relkind = 'p' AND EXISTS (SELECT 1 FROM pg_partition_tree(_check_source_kind.relation) t
                                      JOIN personalize.sources s ON s.relation = t.relid
                                    WHERE t.relid <> _check_source_kind.relation) THEN
        RAISE EXCEPTION 'register_source: a partition of % is a source already', relation
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'Its rows would be events twice.',
                  HINT = 'Unregister the partition first with personalize.unregister_source().';
    END IF;
    IF c.relkind = 'p' AND EXISTS (SELECT 1 FROM pg_partition_tree(relation) t JOIN pg_class r ON r.oid = t.relid
                                     WHERE r.relkind = 'f' OR r.relpersistence = 'u') THEN
        RAISE EXCEPTION 'register_source: % has a foreign or unlogged partition', relation
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Rows routed to it are not in this database''s WAL, so the stream would never see them.',
                  HINT = 'Detach that partition first.';
    END IF;
END $$;

-- ===========================================================================
-- Citus: the configuration every node streams by (docs/scale-out.md)
-- ===========================================================================

-- Whether this is a Citus cluster's coordinator (its group is 0).
CREATE FUNCTION _citus_is_coordinator() RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    coordinator boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT groupid = 0 FROM pg_catalog.pg_dist_local_group' INTO coordinator;
    RETURN coalesce(coordinator, false);
END $$;
COMMENT ON FUNCTION _citus_is_coordinator() IS
    'Whether this node is a Citus cluster''s coordinator (false where Citus is not installed).';

-- The statement that gives a worker node the coordinator's configuration:
-- every namespace and trait, and the sources that are distributed tables
-- (the others are the coordinator's own tables); a trait's named sources
-- keep only those.  Relations, roles and functions go by name: each node
-- has its own oids.  NULL where this is no coordinator.
CREATE FUNCTION _citus_node_config() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dist integer[];
BEGIN
    IF NOT personalize._citus_is_coordinator() THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(array_agg(s.id), '{}') INTO dist
      FROM personalize.sources s
     WHERE personalize._citus_table_kind(s.relation) = 'distributed' AND NOT personalize._citus_replicated(s.relation);
    RETURN format('SELECT personalize._citus_take_config(%L::jsonb)', jsonb_build_object(
        'namespaces', (SELECT coalesce(jsonb_agg(to_jsonb(n) ORDER BY n.id), '[]') FROM personalize.namespaces n),
        'sources', (SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.id), '[]') FROM personalize.sources s
                     WHERE s.id = ANY (dist)),
        'source_identifiers', (SELECT coalesce(jsonb_agg(to_jsonb(i) ORDER BY i.source_id, i.column_name), '[]')
                                 FROM personalize.source_identifiers i WHERE i.source_id = ANY (dist)),
        'source_fields', (SELECT coalesce(jsonb_agg(to_jsonb(f) ORDER BY f.source_id, f.field), '[]')
                            FROM personalize.source_fields f WHERE f.source_id = ANY (dist)),
        'traits', (SELECT coalesce(jsonb_agg(to_jsonb(t) || jsonb_build_object('sources',
                              CASE WHEN t.sources IS NOT NULL
                                   THEN (SELECT coalesce(jsonb_agg(s.relation::text ORDER BY s.id), '[]')
                                           FROM personalize.sources s
                                          WHERE s.id = ANY (dist) AND s.relation = ANY (t.sources)) END)
                              ORDER BY t.id), '[]') FROM personalize.traits t)));
END $$;
COMMENT ON FUNCTION _citus_node_config() IS
    'The statement that gives a worker node the coordinator''s configuration (NULL: not a coordinator).';

-- rows (a JSON array of table's rows) into personalize.<table>, each
-- replacing the row of the same key
CREATE FUNCTION _citus_upsert(tab text, keycols text, rows jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cols text;
    sets text;
BEGIN
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
           string_agg(format('%1$I = excluded.%1$I', a.attname), ', ' ORDER BY a.attnum)
      INTO cols, sets
      FROM pg_attribute a
     WHERE a.attrelid = format('personalize.%I', tab)::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format('INSERT INTO personalize.%1$I (%2$s) OVERRIDING SYSTEM VALUE '
                   'SELECT %2$s FROM jsonb_populate_recordset(NULL::personalize.%1$I, $1) '
                   'ON CONFLICT (%3$s) DO UPDATE SET %4$s', tab, cols, keycols, sets)
      USING rows;
END $$;

-- On a worker node: take the coordinator's configuration (_citus_node_config),
-- in the coordinator's transaction.  What it no longer has goes; the rest is
-- written with the coordinator's ids, so that trait ids, namespace ids and
-- the view's columns are the same on every node.  The view is made here.
CREATE FUNCTION _citus_take_config(config jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    gone text;
BEGIN
    IF personalize._citus_is_coordinator() OR to_regclass('pg_catalog.pg_dist_local_group') IS NULL THEN
        RAISE EXCEPTION '_citus_take_config: this is not a Citus worker node'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'The coordinator sends its configuration to the nodes itself.';
    END IF;
    DELETE FROM personalize.sources s
     WHERE s.id NOT IN (SELECT (x ->> 'id')::integer FROM jsonb_array_elements(config -> 'sources') x);
    DELETE FROM personalize.traits t
     WHERE t.id NOT IN (SELECT (x ->> 'id')::integer FROM jsonb_array_elements(config -> 'traits') x);
    -- a namespace the coordinator dropped may still hold this node's identifiers
    SELECT n.name INTO gone FROM personalize.namespaces n
     WHERE n.id NOT IN (SELECT (x ->> 'id')::integer FROM jsonb_array_elements(config -> 'namespaces') x)
       AND EXISTS (SELECT 1 FROM personalize.identities i WHERE i.namespace_id = n.id) LIMIT 1;
    IF gone IS NOT NULL THEN
        RAISE EXCEPTION 'identifier namespace "%" still holds identifiers on this node', gone
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Forget them on every node first (personalize.forget()).';
    END IF;
    DELETE FROM personalize.namespaces n
     WHERE n.id NOT IN (SELECT (x ->> 'id')::integer FROM jsonb_array_elements(config -> 'namespaces') x);
    PERFORM personalize._citus_upsert('namespaces', 'id', config -> 'namespaces');
    PERFORM personalize._citus_upsert('sources', 'id', config -> 'sources');
    DELETE FROM personalize.source_identifiers i
     WHERE (i.source_id, i.column_name) NOT IN (SELECT (x ->> 'source_id')::integer, (x ->> 'column_name')::name
                                                  FROM jsonb_array_elements(config -> 'source_identifiers') x);
    PERFORM personalize._citus_upsert('source_identifiers', 'source_id, column_name', config -> 'source_identifiers');
    DELETE FROM personalize.source_fields f
     WHERE (f.source_id, f.field) NOT IN (SELECT (x ->> 'source_id')::integer, x ->> 'field'
                                            FROM jsonb_array_elements(config -> 'source_fields') x);
    PERFORM personalize._citus_upsert('source_fields', 'source_id, field', config -> 'source_fields');
    PERFORM personalize._citus_upsert('traits', 'id', config -> 'traits');
    PERFORM setval(pg_get_serial_sequence('personalize.sources', 'id'),
                   greatest((SELECT max(id) FROM personalize.sources), 1), (SELECT max(id) FROM personalize.sources) IS NOT NULL);
    PERFORM setval(pg_get_serial_sequence('personalize.traits', 'id'),
                   greatest((SELECT max(id) FROM personalize.traits), 1), (SELECT max(id) FROM personalize.traits) IS NOT NULL);
    PERFORM personalize._regenerate_view();
END $$;
COMMENT ON FUNCTION _citus_take_config(jsonb) IS
    'On a Citus worker node: take the configuration the coordinator sends (internal).';

-- Whether every worker node has the source in its configuration (asked as
-- the extension's owner, over Citus's connections).
CREATE FUNCTION _citus_on_every_node(relation regclass) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    everywhere boolean;
BEGIN
    EXECUTE 'SELECT coalesce(bool_and(r.success AND r.result = ''t''), true) FROM pg_catalog.run_command_on_workers($1) r'
       INTO everywhere
      USING format('SELECT EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = to_regclass(%L))', relation::text);
    RETURN everywhere;
END $$;

-- Whether citus.enable_change_data_capture is on here and on every worker
-- node (asked as the extension's owner, over Citus's connections).
CREATE FUNCTION _citus_cdc_everywhere() RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    everywhere boolean;
BEGIN
    IF current_setting('citus.enable_change_data_capture', true) IS DISTINCT FROM 'on' THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT coalesce(bool_and(r.success AND r.result = ''on''), true) FROM pg_catalog.run_command_on_workers($1) r'
       INTO everywhere USING 'SHOW citus.enable_change_data_capture';
    RETURN everywhere;
END $$;

-- Whether a distributed table's shards have more than one placement
-- (statement-based replication): each placement's node would stream them.
CREATE FUNCTION _citus_replicated(relation regclass) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    replicated boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_placement') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p USING (shardid)
                             WHERE s.logicalrelid = $1 GROUP BY s.shardid HAVING count(*) > 1)'
       INTO replicated USING relation;
    RETURN replicated;
END $$;

-- Why no worker streams a registered source's inserts, or NULL.  On a
-- coordinator, a distributed table is streamed by the nodes that hold its
-- shards, once each has it in its configuration; on a node, by the node.
-- SECURITY DEFINER: the nodes are asked as the extension's owner, also for
-- a reader of personalize.unstreamed_sources.
CREATE FUNCTION _citus_unstreamed_reason(relation regclass) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kind text := personalize._citus_table_kind(relation);
BEGIN
    IF kind IS NULL OR (kind = 'distributed' AND NOT personalize._citus_is_coordinator()) THEN
        RETURN NULL;
    ELSIF kind <> 'distributed' THEN
        RETURN format('a Citus %s table: its inserts go to shards that no worker streams', kind);
    ELSIF personalize._citus_replicated(relation) THEN
        RETURN 'a Citus distributed table whose shards have more than one placement: each would count its inserts';
    ELSIF NOT personalize._citus_cdc_everywhere() THEN
        RETURN 'a Citus distributed table, and citus.enable_change_data_capture is off on a node: Citus''s own copies of its rows would be counted as events';
    ELSIF NOT personalize._citus_on_every_node(relation) THEN
        RETURN 'a Citus distributed table that not every node has in its configuration (distributed after its registration, or a node added since, or down): call personalize.citus_sync_config()';
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION _citus_unstreamed_reason(regclass) IS
    'Why no worker streams a registered source''s inserts (a Citus table), or NULL.';

-- On a coordinator: every worker node's worker has applied what was
-- committed there before the call (its own wait_for_apply), within timeout.
CREATE FUNCTION _citus_wait_nodes(timeout interval) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    applied boolean;
BEGIN
    IF NOT personalize._citus_is_coordinator()
       OR NOT EXISTS (SELECT 1 FROM personalize.sources s WHERE personalize._citus_table_kind(s.relation) = 'distributed') THEN
        RETURN true;
    END IF;
    EXECUTE 'SELECT coalesce(bool_and(r.success AND r.result = ''t''), true) FROM pg_catalog.run_command_on_workers($1) r'
       INTO applied USING format('SELECT personalize.wait_for_apply(%L)', timeout);
    RETURN applied;
END $$;

CREATE FUNCTION citus_sync_config() RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION citus_sync_config() IS
    'On a Citus coordinator: send the configuration to every worker node again (after create_distributed_table on a registered source, or after adding a node).  Every configuration function sends it by itself.';

CREATE FUNCTION _citus_sync_config() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM personalize._require_admin('send the configuration to the Citus nodes');
    IF NOT personalize._citus_is_coordinator() THEN
        RAISE EXCEPTION 'citus_sync_config: this is not a Citus coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Call it on the coordinator.';
    END IF;
    -- pz_configure sends the configuration once this returns
END $$;

-- Every node's streaming workers: this server's rows of worker_status, then,
-- on a Citus coordinator, each worker node's, asked as the extension's owner
-- over Citus's connections; a node that does not answer is one row of state
-- 'unreachable', with the error as last_error.
CREATE FUNCTION _citus_node_worker_status() RETURNS TABLE (node text, status jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT 'local'::text, to_jsonb(w) FROM personalize.worker_status w;
    IF personalize._citus_is_coordinator() THEN
        RETURN QUERY EXECUTE
            'SELECT r.nodename || '':'' || r.nodeport, x
               FROM pg_catalog.run_command_on_workers($1) r,
                    jsonb_array_elements(CASE WHEN r.success THEN r.result::jsonb
                                              ELSE jsonb_build_array(jsonb_build_object(''state'', ''unreachable'',
                                                                                        ''last_error'', r.result)) END) x'
            USING 'SELECT coalesce(jsonb_agg(to_jsonb(w)), ''[]'') FROM personalize.worker_status w';
    END IF;
END $$;
COMMENT ON FUNCTION _citus_node_worker_status() IS
    'This server''s streaming workers and, on a Citus coordinator, every worker node''s, as JSON (internal: read personalize.node_worker_status).';

CREATE VIEW node_worker_status AS
SELECT s.node, w.*
  FROM personalize._citus_node_worker_status() s,
       jsonb_populate_record(NULL::personalize.worker_status, s.status) w;
COMMENT ON VIEW node_worker_status IS
    'personalize.worker_status of this server (node local) and, on a Citus coordinator, of every worker node (node host:port; state unreachable where a node does not answer).';
REVOKE ALL ON node_worker_status FROM PUBLIC;
GRANT SELECT ON node_worker_status TO personalize_reader, personalize_admin;
REVOKE EXECUTE ON FUNCTION _citus_node_worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _citus_node_worker_status() TO personalize_reader, personalize_admin;

COMMENT ON FUNCTION _citus_upsert(text, text, jsonb) IS
    'Rows given as a JSON array into a configuration table, each replacing the row of the same key (internal).';
COMMENT ON FUNCTION _citus_on_every_node(regclass) IS
    'Whether every Citus worker node has the source in its configuration (internal).';
COMMENT ON FUNCTION _citus_wait_nodes(interval) IS
    'On a Citus coordinator: whether every worker node''s worker applied what was committed there before the call, within timeout (internal).';
COMMENT ON FUNCTION _citus_sync_config() IS
    'The implementation of citus_sync_config() (internal).';
COMMENT ON FUNCTION _citus_cdc_everywhere() IS
    'Whether citus.enable_change_data_capture is on here and on every Citus worker node (internal).';
COMMENT ON FUNCTION _citus_replicated(regclass) IS
    'Whether a Citus distributed table''s shards have more than one placement (internal).';

REVOKE EXECUTE ON FUNCTION _citus_node_config(), _citus_upsert(text, text, jsonb), _citus_take_config(jsonb),
    _citus_on_every_node(regclass), _citus_wait_nodes(interval), _citus_sync_config(), _citus_cdc_everywhere(),
    _citus_unstreamed_reason(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _citus_unstreamed_reason(regclass) TO personalize_reader, personalize_admin;
REVOKE EXECUTE ON FUNCTION citus_sync_config() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION citus_sync_config() TO personalize_admin;

-- Registered sources whose inserts no worker streams, and why (a Citus
-- table, docs/scale-out.md).  The waits report them too;
-- monitoring/queries.yaml counts them.
CREATE VIEW unstreamed_sources AS
SELECT s.relation, r.reason
  FROM personalize.sources s, personalize._citus_unstreamed_reason(s.relation) r(reason)
 WHERE r.reason IS NOT NULL;
COMMENT ON VIEW unstreamed_sources IS
    'Registered sources whose inserts no worker streams, and why: a Citus reference or local table, or a distributed table that not every node has in its configuration.';
REVOKE ALL ON unstreamed_sources FROM PUBLIC;
GRANT SELECT ON unstreamed_sources TO personalize_reader, personalize_admin;


-- ===========================================================================
-- The configuration functions: a C entry records the caller and runs the
-- SECURITY DEFINER implementation of the same arguments
-- ===========================================================================

CREATE FUNCTION _register_source(relation regclass,
                                identifiers jsonb,
                                event_time name,
                                event_type text,
                                event_type_column name,
                                fields jsonb,
                                backfill boolean)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sid integer;
    caller regrole := personalize._configuring_role();
    problem text;
    t oid;
    kv record;
    ns_id integer;
    col text;
    key text;
BEGIN
    PERFORM personalize._require_admin('register a source');
    IF relation IS NULL THEN
        RAISE EXCEPTION 'register_source: relation must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM personalize._check_source_kind(relation);
    IF backfill AND personalize._citus_table_kind(relation) = 'distributed' THEN
        RAISE EXCEPTION 'register_source: % is a Citus distributed table, whose rows are not backfilled yet', relation
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its nodes stream the inserts into their shards from the registration on; the rows already there would be read through the coordinator into its own profiles.',
                  HINT = 'Register it with backfill => false (docs/scale-out.md).';
    END IF;
    IF relation::oid IN (SELECT c.objid FROM pg_depend c
                          WHERE c.classid = 'pg_class'::regclass AND c.deptype = 'e'
                            AND c.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'personalize')) THEN
        RAISE EXCEPTION 'register_source: % is a table of personalize itself', relation
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = _register_source.relation) THEN
        RAISE EXCEPTION 'register_source: % is already a source', relation
            USING ERRCODE = 'duplicate_object', HINT = 'Unregister it first with personalize.unregister_source().';
    END IF;
    IF identifiers IS NULL OR jsonb_typeof(identifiers) <> 'object' OR identifiers = '{}' THEN
        RAISE EXCEPTION 'register_source: identifiers must be a non-empty JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Map identifier columns to namespaces: ''{"customer_id": "customer_id", "email": "email"}''.';
    END IF;
    IF fields IS NULL OR jsonb_typeof(fields) <> 'object' THEN
        RAISE EXCEPTION 'register_source: fields must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name fields by column or jsonb key: ''{"sku": "product_sku", "size": {"column": "props", "key": "size"}}''.';
    END IF;
    IF event_type IS NOT NULL AND event_type_column IS NOT NULL THEN
        RAISE EXCEPTION 'register_source: give event_type (a constant) or event_type_column, not both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    t := personalize._column_type(relation, event_time, 'event time');
    IF t NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RAISE EXCEPTION 'register_source: event time column % is of type %', quote_ident(event_time), t::regtype
            USING ERRCODE = 'datatype_mismatch', HINT = 'The event time must be a timestamptz, timestamp or date column.';
    END IF;
    IF event_type_column IS NOT NULL THEN
        t := personalize._column_type(relation, event_type_column, 'event type');
        IF NOT personalize._is_scalar_type(t) THEN
            RAISE EXCEPTION 'register_source: event type column % is of type %', quote_ident(event_type_column), t::regtype
                USING ERRCODE = 'datatype_mismatch', HINT = 'The event type must be a text, number or enum column.';
        END IF;
    END IF;

    INSERT INTO personalize.sources (relation, event_time_column, event_type_column, event_type, owner)
    VALUES (relation, event_time, event_type_column, event_type, caller) RETURNING id INTO sid;

    FOR kv IN SELECT * FROM jsonb_each(identifiers) LOOP
        col := kv.key;
        IF jsonb_typeof(kv.value) <> 'string' THEN
            RAISE EXCEPTION 'register_source: the namespace of identifier column % must be a string', quote_ident(col)
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Map each column to a namespace name: {"email": "email"}.';
        END IF;
        t := personalize._column_type(relation, col, 'identifier');
        IF NOT personalize._is_scalar_type(t) THEN
            RAISE EXCEPTION 'register_source: identifier column % is of type %', quote_ident(col), t::regtype
                USING ERRCODE = 'datatype_mismatch', HINT = 'Identifiers are text, numbers or uuids.';
        END IF;
        SELECT n.id INTO ns_id FROM personalize.namespaces n WHERE n.name = kv.value #>> '{}';
        IF ns_id IS NULL THEN
            RAISE EXCEPTION 'register_source: unknown namespace %', quote_literal(kv.value #>> '{}')
                USING ERRCODE = 'undefined_object',
                      HINT = coalesce('Namespaces: ' || (SELECT string_agg(n.name, ', ' ORDER BY n.name) FROM personalize.namespaces n) || '.',
                                      'Create one with personalize.create_namespace().');
        END IF;
        IF EXISTS (SELECT 1 FROM personalize.source_identifiers si WHERE si.source_id = sid AND si.namespace_id = ns_id) THEN
            RAISE EXCEPTION 'register_source: two columns hold namespace %', kv.value #>> '{}'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Map one column per namespace; register a view-free copy or a second source for the other column.';
        END IF;
        INSERT INTO personalize.source_identifiers VALUES (sid, col, ns_id);
    END LOOP;

    FOR kv IN SELECT * FROM jsonb_each(fields) LOOP
        PERFORM personalize._check_name('field', kv.key);
        IF jsonb_typeof(kv.value) = 'string' THEN
            col := kv.value #>> '{}';
            key := NULL;
        ELSIF jsonb_typeof(kv.value) = 'object' AND kv.value ? 'column'
              AND (SELECT count(*) FROM jsonb_object_keys(kv.value) k WHERE k NOT IN ('column', 'key')) = 0 THEN
            col := kv.value ->> 'column';
            key := kv.value ->> 'key';
        ELSE
            RAISE EXCEPTION 'register_source: field % must name a column or {"column": ..., "key": ...}', kv.key
                USING ERRCODE = 'invalid_parameter_value', HINT = 'E.g. {"sku": "product_sku", "size": {"column": "props", "key": "size"}}.';
        END IF;
        t := personalize._column_type(relation, col, format('field %s', kv.key));
        IF key IS NOT NULL AND t NOT IN ('jsonb'::regtype, 'json'::regtype) THEN
            RAISE EXCEPTION 'register_source: field % reads key % of column %, which is of type %', kv.key, quote_literal(key), quote_ident(col), t::regtype
                USING ERRCODE = 'datatype_mismatch', HINT = 'Keys are read from json or jsonb columns.';
        ELSIF key IS NULL AND NOT personalize._is_scalar_type(t) THEN
            RAISE EXCEPTION 'register_source: field % is column % of type %', kv.key, quote_ident(col), t::regtype
                USING ERRCODE = 'datatype_mismatch', HINT = 'A field is a text, number, uuid or enum column, or a key of a jsonb column.';
        END IF;
        INSERT INTO personalize.source_fields VALUES (sid, kv.key, col, key);
    END LOOP;

    -- traits restricted to named sources must find their fields here too
    PERFORM personalize._check_trait_sources(t.id) FROM personalize.traits t;
    -- the stream reads it with the caller's rights: they must cover every
    -- column mapped, and every row
    PERFORM personalize._note_unstreamed();
    problem := personalize._source_read_problem(relation, caller, personalize._source_columns(sid, true));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'register_source: %', problem
            USING ERRCODE = 'insufficient_privilege',
                  HINT = CASE WHEN problem LIKE 'row-level security%'
                              THEN 'Sources are read in full: register it as its owner (row-level security not forced) or as a role with BYPASSRLS, or disable row-level security on it.'
                              ELSE format('The source is read with the rights of the role that registers it: GRANT SELECT ON %s TO %s.', relation, caller) END;
    END IF;
    PERFORM personalize._regenerate_view();
    IF backfill THEN
        PERFORM personalize._rebuild(NULL, NULL, sid);
    END IF;
    RETURN sid;
END $$;

CREATE FUNCTION _unregister_source(relation regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    used text;
BEGIN
    PERFORM personalize._require_admin('unregister a source');
    IF NOT EXISTS (SELECT 1 FROM personalize.sources s WHERE s.relation = _unregister_source.relation) THEN
        RAISE EXCEPTION 'unregister_source: % is not a source', relation
            USING ERRCODE = 'undefined_object',
                  HINT = coalesce('Sources: ' || (SELECT string_agg(s.relation::text, ', ' ORDER BY s.id) FROM personalize.sources s) || '.', 'No source is registered.');
    END IF;
    SELECT string_agg(t.name, ', ' ORDER BY t.name) INTO used
      FROM personalize.traits t WHERE relation = ANY (t.sources);
    IF used IS NOT NULL THEN
        RAISE EXCEPTION 'unregister_source: traits % read only named sources, among them %', used, relation
            USING ERRCODE = 'dependent_objects_still_exist', HINT = 'Alter or drop those traits first.';
    END IF;
    DELETE FROM personalize.sources s WHERE s.relation = _unregister_source.relation;
END $$;

CREATE FUNCTION _add_trait(name text, kind text,
                          field text,
                          sources regclass[],
                          event_types text[],
                          n integer,
                          half_life interval,
                          windows interval[],
                          gap interval,
                          item_field text,
                          hll_precision integer,
                          backfill boolean)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tr personalize.traits;
BEGIN
    PERFORM personalize._require_admin('add a trait');
    tr.name := name; tr.kind := kind; tr.field := field; tr.sources := sources;
    tr.event_types := event_types; tr.n := n; tr.half_life := half_life; tr.windows := windows;
    tr.gap := gap; tr.item_field := item_field; tr.hll_precision := hll_precision;
    tr := personalize._check_trait(tr);
    IF EXISTS (SELECT 1 FROM personalize.traits t WHERE t.name = tr.name) THEN
        RAISE EXCEPTION 'trait % already exists', tr.name
            USING ERRCODE = 'duplicate_object', HINT = 'Change it with personalize.alter_trait() or drop it first.';
    END IF;
    INSERT INTO personalize.traits (name, kind, field, item_field, sources, event_types, n, half_life, windows, gap, hll_precision)
    VALUES (tr.name, tr.kind, tr.field, tr.item_field, tr.sources, tr.event_types, tr.n, tr.half_life, tr.windows, tr.gap, tr.hll_precision)
    RETURNING id INTO tr.id;
    PERFORM personalize._check_trait_sources(tr.id);
    PERFORM personalize._check_trait_field(tr.id);
    PERFORM personalize._check_trait_access(tr.id, personalize._configuring_role());
    PERFORM personalize._note_unstreamed();
    PERFORM personalize._regenerate_view();
    IF backfill THEN
        PERFORM personalize._rebuild(NULL, ARRAY[tr.id], NULL);
    END IF;
    RETURN tr.id;
END $$;

CREATE FUNCTION _alter_trait(name text,
                            kind text,
                            field text,
                            sources regclass[],
                            event_types text[],
                            n integer,
                            half_life interval,
                            windows interval[],
                            gap interval,
                            item_field text,
                            hll_precision integer,
                            all_sources boolean,
                            all_event_types boolean,
                            backfill boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old personalize.traits;
    tr personalize.traits;
BEGIN
    PERFORM personalize._require_admin('alter a trait');
    SELECT * INTO old FROM personalize.traits t WHERE t.name = _alter_trait.name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM personalize._unknown_trait(_alter_trait.name);
    END IF;
    tr := old;
    IF kind IS NOT NULL AND kind <> old.kind THEN
        -- parameters of the old kind do not carry over
        tr.kind := kind; tr.n := NULL; tr.half_life := NULL; tr.windows := NULL; tr.gap := NULL;
        tr.hll_precision := NULL; tr.item_field := NULL;
    END IF;
    tr.field := coalesce(field, tr.field);
    tr.item_field := coalesce(item_field, tr.item_field);
    tr.sources := CASE WHEN all_sources THEN NULL ELSE coalesce(sources, tr.sources) END;
    tr.event_types := CASE WHEN all_event_types THEN NULL ELSE coalesce(event_types, tr.event_types) END;
    tr.n := coalesce(n, tr.n);
    tr.half_life := coalesce(half_life, tr.half_life);
    tr.windows := coalesce(windows, tr.windows);
    tr.gap := coalesce(gap, tr.gap);
    tr.hll_precision := coalesce(hll_precision, tr.hll_precision);
    tr := personalize._check_trait(tr);
    UPDATE personalize.traits t
       SET kind = tr.kind, field = tr.field, item_field = tr.item_field, sources = tr.sources,
           event_types = tr.event_types, n = tr.n, half_life = tr.half_life, windows = tr.windows,
           gap = tr.gap, hll_precision = tr.hll_precision, changed_at = now()
     WHERE t.id = tr.id;
    PERFORM personalize._check_trait_sources(tr.id);
    PERFORM personalize._check_trait_field(tr.id);
    PERFORM personalize._check_trait_access(tr.id, personalize._configuring_role());
    PERFORM personalize._note_unstreamed();
    PERFORM personalize._regenerate_view();
    -- the states were built under the old definition: never keep them
    IF backfill THEN
        PERFORM personalize._rebuild(NULL, ARRAY[tr.id], NULL);
    ELSE
        UPDATE personalize.profiles p SET states = personalize.profile_remove(p.states, tr.id), updated_at = now()
         WHERE tr.id = ANY (personalize.profile_traits(p.states));
    END IF;
END $$;

CREATE FUNCTION _drop_trait(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tid integer;
BEGIN
    PERFORM personalize._require_admin('drop a trait');
    SELECT t.id INTO tid FROM personalize.traits t WHERE t.name = _drop_trait.name;
    IF tid IS NULL THEN
        PERFORM personalize._unknown_trait(_drop_trait.name);
    END IF;
    -- events already committed to its sources are applied first: none of
    -- them may bring the state back once it is removed
    PERFORM personalize._rebuild_lock();
    PERFORM personalize._quiesce(ARRAY(SELECT st.source_id FROM personalize.stream_traits st WHERE st.trait_id = tid),
                                 'drop_trait', true);
    DELETE FROM personalize.traits t WHERE t.id = tid;
    UPDATE personalize.profiles p SET states = personalize.profile_remove(p.states, tid), updated_at = now()
     WHERE tid = ANY (personalize.profile_traits(p.states));
    PERFORM personalize._regenerate_view();
END $$;


-- ===========================================================================
-- A source stays a table the stream sees whole
-- ===========================================================================

-- Refuses, at the end of the DDL command, what would make a registered
-- source's rows miss the stream: SET UNLOGGED, or an unlogged or foreign
-- partition (attached, or created as a partition).  SECURITY DEFINER: it
-- runs at every CREATE TABLE and ALTER TABLE in the database, by any role,
-- and must read personalize.sources.
CREATE FUNCTION _source_altered() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src regclass;
BEGIN
    IF pg_catalog.to_regclass('personalize.sources') IS NULL THEN
        RETURN;
    END IF;
    FOR src IN
        SELECT DISTINCT s.relation
          FROM pg_catalog.pg_event_trigger_ddl_commands() c
         CROSS JOIN LATERAL (SELECT c.objid AS rel
                             UNION ALL
                             SELECT a.relid FROM pg_catalog.pg_partition_ancestors(c.objid) a) r
          JOIN personalize.sources s ON s.relation OPERATOR(pg_catalog.=) r.rel
         WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND c.objsubid OPERATOR(pg_catalog.=) 0
    LOOP
        -- (pg_partition_tree() is empty for a table outside any partition tree)
        IF EXISTS (SELECT 1 FROM (SELECT src::pg_catalog.oid AS relid
                                  UNION ALL
                                  SELECT t.relid FROM pg_catalog.pg_partition_tree(src) t) t
                     JOIN pg_catalog.pg_class k ON k.oid OPERATOR(pg_catalog.=) t.relid
                    WHERE k.relpersistence OPERATOR(pg_catalog.=) 'u' OR k.relkind OPERATOR(pg_catalog.=) 'f') THEN
            RAISE EXCEPTION 'cannot make rows of % unlogged or foreign: it is a personalize source', src
                USING ERRCODE = 'object_in_use',
                      DETAIL = 'Rows written there would not be in the WAL, and the stream would never see them.',
                      HINT = 'Unregister the source first with personalize.unregister_source().';
        END IF;
    END LOOP;
END $$;
CREATE EVENT TRIGGER personalize_source_altered ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'CREATE FOREIGN TABLE')
    EXECUTE FUNCTION _source_altered();

-- ===========================================================================
-- The worker's status: how often it failed, and when it tries again
-- ===========================================================================


COMMENT ON FUNCTION worker_start() IS
    'Resume this database''s worker after worker_stop(): it applies what was committed meanwhile; a worker waiting to retry after an error tries at once.  false if it was not stopped.';
COMMENT ON FUNCTION worker_restart() IS
    'Terminate this database''s worker; the postmaster starts it again at once, and it resumes after the last applied transaction without waiting to retry.';

-- ===========================================================================
-- Every function, aggregate and type a user sees explains itself (\df+, \dT+)
-- ===========================================================================

COMMENT ON FUNCTION recent_state_in(cstring, oid, integer) IS
    'text input of recent_state (its JSON form); validates every field';
COMMENT ON FUNCTION recent_state_out(recent_state) IS
    'text output of recent_state: a JSON object, times in UTC';
COMMENT ON FUNCTION recent_state_recv(internal, oid, integer) IS
    'binary input of recent_state: validates every field';
COMMENT ON FUNCTION recent_state_send(recent_state) IS
    'binary output of recent_state: its flat form';
COMMENT ON FUNCTION state_merge(recent_state, recent_state) IS
    'merge two recent_state values (the N most recent distinct values with their times); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(recent_state, recent_state) IS
    'recent_state values that hold the same state';
COMMENT ON FUNCTION state_ne(recent_state, recent_state) IS
    'recent_state values that hold different states';
COMMENT ON FUNCTION recent_state_final(internal) IS
    'final function of the aggregates that build a recent_state';
COMMENT ON FUNCTION recent_state_merge_trans(internal, recent_state) IS
    'transition function of merge_agg(recent_state)';
COMMENT ON AGGREGATE merge_agg(recent_state) IS
    'merge of the recent_state values of a group (the N most recent distinct values with their times); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION top_state_in(cstring, oid, integer) IS
    'text input of top_state (its JSON form); validates every field';
COMMENT ON FUNCTION top_state_out(top_state) IS
    'text output of top_state: a JSON object, times in UTC';
COMMENT ON FUNCTION top_state_recv(internal, oid, integer) IS
    'binary input of top_state: validates every field';
COMMENT ON FUNCTION top_state_send(top_state) IS
    'binary output of top_state: its flat form';
COMMENT ON FUNCTION state_merge(top_state, top_state) IS
    'merge two top_state values (per-value weights decayed by a half-life, the N heaviest kept); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(top_state, top_state) IS
    'top_state values that hold the same state';
COMMENT ON FUNCTION state_ne(top_state, top_state) IS
    'top_state values that hold different states';
COMMENT ON FUNCTION top_state_final(internal) IS
    'final function of the aggregates that build a top_state';
COMMENT ON FUNCTION top_state_merge_trans(internal, top_state) IS
    'transition function of merge_agg(top_state)';
COMMENT ON AGGREGATE merge_agg(top_state) IS
    'merge of the top_state values of a group (per-value weights decayed by a half-life, the N heaviest kept); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION windowed_state_in(cstring, oid, integer) IS
    'text input of windowed_state (its JSON form); validates every field';
COMMENT ON FUNCTION windowed_state_out(windowed_state) IS
    'text output of windowed_state: a JSON object, times in UTC';
COMMENT ON FUNCTION windowed_state_recv(internal, oid, integer) IS
    'binary input of windowed_state: validates every field';
COMMENT ON FUNCTION windowed_state_send(windowed_state) IS
    'binary output of windowed_state: its flat form';
COMMENT ON FUNCTION state_merge(windowed_state, windowed_state) IS
    'merge two windowed_state values (event counts and sums in time buckets); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(windowed_state, windowed_state) IS
    'windowed_state values that hold the same state';
COMMENT ON FUNCTION state_ne(windowed_state, windowed_state) IS
    'windowed_state values that hold different states';
COMMENT ON FUNCTION windowed_state_final(internal) IS
    'final function of the aggregates that build a windowed_state';
COMMENT ON FUNCTION windowed_state_merge_trans(internal, windowed_state) IS
    'transition function of merge_agg(windowed_state)';
COMMENT ON AGGREGATE merge_agg(windowed_state) IS
    'merge of the windowed_state values of a group (event counts and sums in time buckets); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION distinct_state_in(cstring, oid, integer) IS
    'text input of distinct_state (its JSON form); validates every field';
COMMENT ON FUNCTION distinct_state_out(distinct_state) IS
    'text output of distinct_state: a JSON object, times in UTC';
COMMENT ON FUNCTION distinct_state_recv(internal, oid, integer) IS
    'binary input of distinct_state: validates every field';
COMMENT ON FUNCTION distinct_state_send(distinct_state) IS
    'binary output of distinct_state: its flat form';
COMMENT ON FUNCTION state_merge(distinct_state, distinct_state) IS
    'merge two distinct_state values (a HyperLogLog sketch of distinct values); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(distinct_state, distinct_state) IS
    'distinct_state values that hold the same state';
COMMENT ON FUNCTION state_ne(distinct_state, distinct_state) IS
    'distinct_state values that hold different states';
COMMENT ON FUNCTION distinct_state_final(internal) IS
    'final function of the aggregates that build a distinct_state';
COMMENT ON FUNCTION distinct_state_merge_trans(internal, distinct_state) IS
    'transition function of merge_agg(distinct_state)';
COMMENT ON AGGREGATE merge_agg(distinct_state) IS
    'merge of the distinct_state values of a group (a HyperLogLog sketch of distinct values); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION first_state_in(cstring, oid, integer) IS
    'text input of first_state (its JSON form); validates every field';
COMMENT ON FUNCTION first_state_out(first_state) IS
    'text output of first_state: a JSON object, times in UTC';
COMMENT ON FUNCTION first_state_recv(internal, oid, integer) IS
    'binary input of first_state: validates every field';
COMMENT ON FUNCTION first_state_send(first_state) IS
    'binary output of first_state: its flat form';
COMMENT ON FUNCTION state_merge(first_state, first_state) IS
    'merge two first_state values (the value of the earliest event by event time); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(first_state, first_state) IS
    'first_state values that hold the same state';
COMMENT ON FUNCTION state_ne(first_state, first_state) IS
    'first_state values that hold different states';
COMMENT ON FUNCTION first_state_final(internal) IS
    'final function of the aggregates that build a first_state';
COMMENT ON FUNCTION first_state_merge_trans(internal, first_state) IS
    'transition function of merge_agg(first_state)';
COMMENT ON AGGREGATE merge_agg(first_state) IS
    'merge of the first_state values of a group (the value of the earliest event by event time); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION last_state_in(cstring, oid, integer) IS
    'text input of last_state (its JSON form); validates every field';
COMMENT ON FUNCTION last_state_out(last_state) IS
    'text output of last_state: a JSON object, times in UTC';
COMMENT ON FUNCTION last_state_recv(internal, oid, integer) IS
    'binary input of last_state: validates every field';
COMMENT ON FUNCTION last_state_send(last_state) IS
    'binary output of last_state: its flat form';
COMMENT ON FUNCTION state_merge(last_state, last_state) IS
    'merge two last_state values (the value of the latest event by event time); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(last_state, last_state) IS
    'last_state values that hold the same state';
COMMENT ON FUNCTION state_ne(last_state, last_state) IS
    'last_state values that hold different states';
COMMENT ON FUNCTION last_state_final(internal) IS
    'final function of the aggregates that build a last_state';
COMMENT ON FUNCTION last_state_merge_trans(internal, last_state) IS
    'transition function of merge_agg(last_state)';
COMMENT ON AGGREGATE merge_agg(last_state) IS
    'merge of the last_state values of a group (the value of the latest event by event time); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION session_state_in(cstring, oid, integer) IS
    'text input of session_state (its JSON form); validates every field';
COMMENT ON FUNCTION session_state_out(session_state) IS
    'text output of session_state: a JSON object, times in UTC';
COMMENT ON FUNCTION session_state_recv(internal, oid, integer) IS
    'binary input of session_state: validates every field';
COMMENT ON FUNCTION session_state_send(session_state) IS
    'binary output of session_state: its flat form';
COMMENT ON FUNCTION state_merge(session_state, session_state) IS
    'merge two session_state values (the current session (inactivity gap)); associative and commutative, NULL is the empty state';
COMMENT ON FUNCTION state_eq(session_state, session_state) IS
    'session_state values that hold the same state';
COMMENT ON FUNCTION state_ne(session_state, session_state) IS
    'session_state values that hold different states';
COMMENT ON FUNCTION session_state_final(internal) IS
    'final function of the aggregates that build a session_state';
COMMENT ON FUNCTION session_state_merge_trans(internal, session_state) IS
    'transition function of merge_agg(session_state)';
COMMENT ON AGGREGATE merge_agg(session_state) IS
    'merge of the session_state values of a group (the current session (inactivity gap)); NULL inputs are skipped; parallel';
COMMENT ON FUNCTION trait_state_combine(internal, internal) IS
    'combine function of every trait-state aggregate: merges two partial states (parallel and distributed aggregation)';
COMMENT ON FUNCTION trait_state_serialize(internal) IS
    'serialize function of every trait-state aggregate: a partial state as bytea';
COMMENT ON FUNCTION trait_state_deserialize(bytea, internal) IS
    'deserialize function of every trait-state aggregate';
COMMENT ON FUNCTION recent_agg_trans(internal, text, timestamptz, integer) IS
    'transition function of recent_agg(text, timestamptz, integer)';
COMMENT ON AGGREGATE recent_agg(text, timestamptz, integer) IS
    'the n most recent distinct values of the group, each with its latest time (recent_state); parallel';
COMMENT ON FUNCTION top_agg_trans(internal, text, timestamptz, integer, interval) IS
    'transition function of top_agg(text, timestamptz, integer, interval)';
COMMENT ON AGGREGATE top_agg(text, timestamptz, integer, interval) IS
    'the n values of the group with the most weight, each event weighing 1 and decaying by half every half_life (top_state); parallel';
COMMENT ON FUNCTION top_agg_trans(internal, text, timestamptz, integer, interval, double precision) IS
    'transition function of top_agg(text, timestamptz, integer, interval, double precision)';
COMMENT ON AGGREGATE top_agg(text, timestamptz, integer, interval, double precision) IS
    'the n values of the group with the most weight, each event weighing weight and decaying by half every half_life (top_state); parallel';
COMMENT ON FUNCTION distinct_agg_trans(internal, text) IS
    'transition function of distinct_agg(text)';
COMMENT ON AGGREGATE distinct_agg(text) IS
    'a HyperLogLog sketch of the distinct values of the group, precision 12 (distinct_state); parallel';
COMMENT ON FUNCTION distinct_agg_trans(internal, text, integer) IS
    'transition function of distinct_agg(text, integer)';
COMMENT ON AGGREGATE distinct_agg(text, integer) IS
    'a HyperLogLog sketch of the distinct values of the group at precision p, 4 to 18 (distinct_state); parallel';
COMMENT ON FUNCTION first_agg_trans(internal, text, timestamptz) IS
    'transition function of first_agg(text, timestamptz)';
COMMENT ON AGGREGATE first_agg(text, timestamptz) IS
    'the value of the earliest event of the group by event time, ties broken by the smallest value (first_state); parallel';
COMMENT ON FUNCTION last_agg_trans(internal, text, timestamptz) IS
    'transition function of last_agg(text, timestamptz)';
COMMENT ON AGGREGATE last_agg(text, timestamptz) IS
    'the value of the latest event of the group by event time, ties broken by the largest value (last_state); parallel';
COMMENT ON FUNCTION recent_agg_trans(internal, bigint, timestamptz, integer) IS
    'transition function of recent_agg(bigint, timestamptz, integer)';
COMMENT ON AGGREGATE recent_agg(bigint, timestamptz, integer) IS
    'the n most recent distinct values of the group, each with its latest time (recent_state); parallel';
COMMENT ON FUNCTION top_agg_trans(internal, bigint, timestamptz, integer, interval) IS
    'transition function of top_agg(bigint, timestamptz, integer, interval)';
COMMENT ON AGGREGATE top_agg(bigint, timestamptz, integer, interval) IS
    'the n values of the group with the most weight, each event weighing 1 and decaying by half every half_life (top_state); parallel';
COMMENT ON FUNCTION top_agg_trans(internal, bigint, timestamptz, integer, interval, double precision) IS
    'transition function of top_agg(bigint, timestamptz, integer, interval, double precision)';
COMMENT ON AGGREGATE top_agg(bigint, timestamptz, integer, interval, double precision) IS
    'the n values of the group with the most weight, each event weighing weight and decaying by half every half_life (top_state); parallel';
COMMENT ON FUNCTION distinct_agg_trans(internal, bigint) IS
    'transition function of distinct_agg(bigint)';
COMMENT ON AGGREGATE distinct_agg(bigint) IS
    'a HyperLogLog sketch of the distinct values of the group, precision 12 (distinct_state); parallel';
COMMENT ON FUNCTION distinct_agg_trans(internal, bigint, integer) IS
    'transition function of distinct_agg(bigint, integer)';
COMMENT ON AGGREGATE distinct_agg(bigint, integer) IS
    'a HyperLogLog sketch of the distinct values of the group at precision p, 4 to 18 (distinct_state); parallel';
COMMENT ON FUNCTION first_agg_trans(internal, bigint, timestamptz) IS
    'transition function of first_agg(bigint, timestamptz)';
COMMENT ON AGGREGATE first_agg(bigint, timestamptz) IS
    'the value of the earliest event of the group by event time, ties broken by the smallest value (first_state); parallel';
COMMENT ON FUNCTION last_agg_trans(internal, bigint, timestamptz) IS
    'transition function of last_agg(bigint, timestamptz)';
COMMENT ON AGGREGATE last_agg(bigint, timestamptz) IS
    'the value of the latest event of the group by event time, ties broken by the largest value (last_state); parallel';
COMMENT ON FUNCTION windowed_agg_trans(internal, timestamptz) IS
    'transition function of windowed_agg(timestamptz)';
COMMENT ON AGGREGATE windowed_agg(timestamptz) IS
    'the events of the group counted in time buckets (minutes up to 1 h, hours up to 48 h, days up to 90 d), read over any window later (windowed_state); parallel';
COMMENT ON FUNCTION windowed_agg_trans(internal, timestamptz, double precision) IS
    'transition function of windowed_agg(timestamptz, double precision)';
COMMENT ON AGGREGATE windowed_agg(timestamptz, double precision) IS
    'the events of the group counted and their values summed in time buckets, read over any window later (windowed_state); parallel';
COMMENT ON FUNCTION session_agg_trans(internal, timestamptz, text, text) IS
    'transition function of session_agg(timestamptz, text, text)';
COMMENT ON AGGREGATE session_agg(timestamptz, text, text) IS
    'the latest session of the group (a 30-minute inactivity gap ends one): start, last activity, events, dominant category, last item (session_state); parallel';
COMMENT ON FUNCTION session_agg_trans(internal, timestamptz, text, text, interval) IS
    'transition function of session_agg(timestamptz, text, text, interval)';
COMMENT ON AGGREGATE session_agg(timestamptz, text, text, interval) IS
    'the latest session of the group, gap the inactivity that ends one (session_state); parallel';
COMMENT ON FUNCTION recent_values(recent_state) IS
    'the values, newest first';
COMMENT ON FUNCTION recent_times(recent_state) IS
    'the values latest times, newest first';
COMMENT ON FUNCTION recent_size(recent_state) IS
    'how many values the state holds (at most its n)';
COMMENT ON FUNCTION recent_items(recent_state) IS
    'the values and their latest times as rows, newest first';
COMMENT ON FUNCTION top_values(top_state) IS
    'the values, heaviest first';
COMMENT ON FUNCTION top_values(top_state, integer) IS
    'the k heaviest values, heaviest first';
COMMENT ON FUNCTION top_weights(top_state) IS
    'the values weights as of the latest event, heaviest first';
COMMENT ON FUNCTION top_weights(top_state, timestamptz) IS
    'the values weights decayed to the time at, heaviest first';
COMMENT ON FUNCTION top_items(top_state) IS
    'the values and their weights as rows, heaviest first';
COMMENT ON FUNCTION windowed_count(windowed_state, interval) IS
    'the events in the last span before now() (windows up to 90 days)';
COMMENT ON FUNCTION windowed_count(windowed_state, interval, timestamptz) IS
    'the events in the span before at';
COMMENT ON FUNCTION windowed_sum(windowed_state, interval) IS
    'the sum of the values in the last span before now()';
COMMENT ON FUNCTION windowed_sum(windowed_state, interval, timestamptz) IS
    'the sum of the values in the span before at';
COMMENT ON FUNCTION windowed_total_count(windowed_state) IS
    'every event the state holds';
COMMENT ON FUNCTION windowed_total_sum(windowed_state) IS
    'the sum of every value the state holds';
COMMENT ON FUNCTION windowed_latest(windowed_state) IS
    'the time of the latest event';
COMMENT ON FUNCTION distinct_count(distinct_state) IS
    'the estimated number of distinct values (HyperLogLog; relative error about 1.04/sqrt(2^precision))';
COMMENT ON FUNCTION distinct_precision(distinct_state) IS
    'the sketchs precision (registers: 2^precision)';
COMMENT ON FUNCTION event_value(first_state) IS
    'the value of the earliest event';
COMMENT ON FUNCTION event_time(first_state) IS
    'the time of the earliest event';
COMMENT ON FUNCTION event_value(last_state) IS
    'the value of the latest event';
COMMENT ON FUNCTION event_time(last_state) IS
    'the time of the latest event';
COMMENT ON FUNCTION session_start(session_state) IS
    'when the current session started';
COMMENT ON FUNCTION session_last_activity(session_state) IS
    'the time of the sessions latest event';
COMMENT ON FUNCTION session_events(session_state) IS
    'how many events the session holds';
COMMENT ON FUNCTION session_dominant_category(session_state) IS
    'the category with the most events in the session (ties: the smallest)';
COMMENT ON FUNCTION session_last_item(session_state) IS
    'the item of the sessions latest event';
COMMENT ON FUNCTION session_info(session_state) IS
    'the session as jsonb: start, last activity, duration, events, dominant category, last item';
COMMENT ON FUNCTION session_duration(session_state) IS
    'last activity minus start';
COMMENT ON FUNCTION identity_graph_changed() IS
    'trigger of the identity tables: tells every backends identity cache that the graph or the namespaces changed';
COMMENT ON TYPE source_column IS
    'a column of a source table that holds identifiers of a namespace: forget() deletes the rows whose value is a forgotten identifier';

-- ===========================================================================
-- Privileges
-- ===========================================================================


REVOKE EXECUTE ON FUNCTION
    _register_source(regclass, jsonb, name, text, name, jsonb, boolean),
    _unregister_source(regclass),
    _add_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean),
    _alter_trait(text, text, text, regclass[], text[], integer, interval, interval[], interval, text, integer, boolean, boolean, boolean),
    _drop_trait(text)
    FROM PUBLIC;

-- ###########################################################################
-- Audiences (since 0.7.0)
-- ###########################################################################
--
-- An audience is a named boolean condition over the profile view's
-- columns.  Its membership is kept by the code that writes profiles: the
-- streaming worker, in the transaction that writes the profile and its
-- progress; identity merges, splits and forget(); rebuild(); and the
-- passing of time, from a schedule of the next moment each profile's
-- result can change.  Every entry and exit is a row of audience_events.


-- ===========================================================================
-- Tables
-- ===========================================================================

CREATE TABLE audiences (
    id            integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    condition     text NOT NULL,
    owner         regrole NOT NULL,
    timed         boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    altered_at    timestamptz NOT NULL DEFAULT now(),
    errors        bigint NOT NULL DEFAULT 0,
    last_error    text,
    last_error_at timestamptz
);
COMMENT ON TABLE audiences IS
    'One row per audience: a boolean condition over personalize.profile_view''s columns, evaluated with the rights of its owner.  Written by create_audience, alter_audience and drop_audience.';
COMMENT ON COLUMN audiences.condition IS 'The condition as given: a boolean SQL expression over the profile view''s columns';
COMMENT ON COLUMN audiences.owner IS 'The role that created (or last altered) the audience: the condition runs with its rights';
COMMENT ON COLUMN audiences.timed IS 'The condition reads a window or the clock: its result can change with the passing of time alone, and is scheduled';
COMMENT ON COLUMN audiences.errors IS 'Evaluations that raised an ERROR (the membership stayed as it was)';
COMMENT ON COLUMN audiences.last_error IS 'The last such ERROR';

CREATE TABLE audience_memberships (
    audience_id integer NOT NULL,  -- no foreign key: a check per entry cost the worker; drop_audience deletes
    profile_id  bigint NOT NULL,
    since       timestamptz NOT NULL,
    PRIMARY KEY (profile_id, audience_id)
);
CREATE INDEX audience_memberships_by_audience ON audience_memberships (audience_id, profile_id);
COMMENT ON TABLE audience_memberships IS
    'Who is in which audience, since when.  Read it through personalize.audience_members.';

CREATE TABLE audience_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    audience   text NOT NULL,
    profile_id bigint NOT NULL,
    entered    boolean NOT NULL,
    at         timestamptz NOT NULL,
    why        text NOT NULL CHECK (why IN ('event', 'time', 'merge', 'split', 'erasure', 'rebuild', 'refresh'))
);
CREATE INDEX audience_events_by_profile ON audience_events (profile_id);
COMMENT ON TABLE audience_events IS
    'Every entry into and exit from an audience, append-only: why is event (a streamed event''s commit), time (the passing of time alone), merge, split, erasure (forget()), rebuild or refresh.  Kept for personalize.audience_events_retention.';

CREATE TABLE audience_due (
    profile_id bigint PRIMARY KEY,
    due        timestamptz NOT NULL
);
CREATE INDEX audience_due_by_time ON audience_due (due);
COMMENT ON TABLE audience_due IS
    'The schedule of time-driven transitions: the next moment the result of a timed audience can change for the profile, with no new event.';

SELECT pg_catalog.pg_extension_config_dump('audiences', '');
SELECT pg_catalog.pg_extension_config_dump('audience_memberships', '');
SELECT pg_catalog.pg_extension_config_dump('audience_events', '');
SELECT pg_catalog.pg_extension_config_dump('audience_due', '');
SELECT pg_catalog.pg_extension_config_dump('audiences_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('audience_events_id_seq', '');

CREATE VIEW audience_members AS
SELECT a.name AS audience, m.profile_id, m.since
  FROM personalize.audience_memberships m
  JOIN personalize.audiences a ON a.id = m.audience_id;
COMMENT ON VIEW audience_members IS
    'One row per profile in an audience: join it to personalize.profile_view on profile_id.';

-- ===========================================================================
-- The engine (src/audience.c, src/audience_condition.c)
-- ===========================================================================

CREATE FUNCTION _audience_check(condition text, owner regrole) RETURNS boolean
    AS 'MODULE_PATHNAME', 'pz_audience_check' LANGUAGE C STABLE PARALLEL UNSAFE;
COMMENT ON FUNCTION _audience_check(text, regrole) IS
    'ERROR with a hint unless condition is a boolean expression over personalize.profile_view''s columns that owner may evaluate (no subquery, aggregate, window or set-returning function, no volatile function but the clock, time read only in comparisons that can be scheduled); true if its result can change with time alone.';

CREATE FUNCTION _audiences_changed() RETURNS void
    AS 'MODULE_PATHNAME', 'pz_audiences_changed' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION _audiences_changed() IS
    'Tells every backend and the worker, at commit, that audiences changed: their compiled conditions are rebuilt.';

CREATE FUNCTION _audiences_evaluate(profile_ids bigint[], why text, audience_id integer DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'pz_audiences_evaluate' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION _audiences_evaluate(bigint[], text, integer) IS
    'Evaluate the audiences (one: audience_id) of the given profiles (NULL: every profile) and record the entries and exits with reason why; returns how many.';

CREATE FUNCTION _audiences_check_all() RETURNS void
    AS 'MODULE_PATHNAME', 'pz_audiences_check_all' LANGUAGE C STABLE PARALLEL UNSAFE;
COMMENT ON FUNCTION _audiences_check_all() IS
    'ERROR unless every audience''s condition still compiles against personalize.profile_view (a trait it reads was dropped or changed).';

-- _audience_check compiles as the role it is given (which folds the
-- condition's immutable functions): only the configuration functions call it
REVOKE EXECUTE ON FUNCTION _audience_check(text, regrole), _audiences_changed(),
    _audiences_evaluate(bigint[], text, integer), _audiences_check_all() FROM PUBLIC;

-- ===========================================================================
-- Configuration: SECURITY DEFINER implementations behind pz_configure
-- ===========================================================================

CREATE FUNCTION _create_audience(name text, condition text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    caller regrole := personalize._configuring_role();
    aid integer;
    is_timed boolean;
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid audience name %', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'invalid_name', HINT = 'Audience names are lower-case letters, digits and underscores, starting with a letter, at most 63 characters.';
    END IF;
    IF EXISTS (SELECT 1 FROM personalize.audiences a WHERE a.name = _create_audience.name) THEN
        RAISE EXCEPTION 'audience % already exists', name
            USING ERRCODE = 'duplicate_object', HINT = 'Change its condition with personalize.alter_audience(), or drop it first.';
    END IF;
    is_timed := personalize._audience_check(condition, caller);
    INSERT INTO personalize.audiences (name, condition, owner, timed)
    VALUES (_create_audience.name, _create_audience.condition, caller, is_timed) RETURNING id INTO aid;
    PERFORM personalize._audiences_changed();
    PERFORM personalize._audiences_evaluate(NULL, 'refresh', aid);
    RETURN (SELECT count(*) FROM personalize.audience_memberships m WHERE m.audience_id = aid);
END $$;

CREATE FUNCTION _alter_audience(name text, condition text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    caller regrole := personalize._configuring_role();
    aid integer;
    is_timed boolean;
BEGIN
    SELECT a.id INTO aid FROM personalize.audiences a WHERE a.name = _alter_audience.name FOR UPDATE;
    IF aid IS NULL THEN
        RAISE EXCEPTION 'audience % does not exist', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'undefined_object', HINT = 'personalize.audiences lists the audiences; create one with personalize.create_audience().';
    END IF;
    is_timed := personalize._audience_check(condition, caller);
    UPDATE personalize.audiences a
       SET condition = _alter_audience.condition, owner = caller, timed = is_timed, altered_at = now(),
           errors = 0, last_error = NULL, last_error_at = NULL
     WHERE a.id = aid;
    PERFORM personalize._audiences_changed();
    PERFORM personalize._audiences_evaluate(NULL, 'refresh', aid);
    RETURN (SELECT count(*) FROM personalize.audience_memberships m WHERE m.audience_id = aid);
END $$;

CREATE FUNCTION _drop_audience(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    aid integer;
BEGIN
    -- the membership writers' lock first: the worker, holding it, may be
    -- writing this audience's rows, and would wait for ours (a deadlock)
    PERFORM personalize._audiences_changed();
    DELETE FROM personalize.audiences a WHERE a.name = _drop_audience.name RETURNING a.id INTO aid;
    IF aid IS NULL THEN
        RAISE EXCEPTION 'audience % does not exist', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'undefined_object', HINT = 'personalize.audiences lists the audiences.';
    END IF;
    DELETE FROM personalize.audience_memberships m WHERE m.audience_id = aid;
END $$;

CREATE FUNCTION _refresh_audience(name text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    aid integer;
BEGIN
    SELECT a.id INTO aid FROM personalize.audiences a WHERE a.name = _refresh_audience.name;
    IF aid IS NULL THEN
        RAISE EXCEPTION 'audience % does not exist', coalesce(quote_literal(name), 'NULL')
            USING ERRCODE = 'undefined_object', HINT = 'personalize.audiences lists the audiences.';
    END IF;
    RETURN personalize._audiences_evaluate(NULL, 'refresh', aid);
END $$;

REVOKE EXECUTE ON FUNCTION _create_audience(text, text), _alter_audience(text, text),
    _drop_audience(text), _refresh_audience(text) FROM PUBLIC;

CREATE FUNCTION create_audience(name text, condition text) RETURNS bigint
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION create_audience(text, text) IS
    'Create an audience: a boolean condition over personalize.profile_view''s columns (e.g. ''cart_adds_4h > 0 AND orders_4h = 0''), run with your rights.  Its members are computed at once (entries with why = refresh); returns how many.';

CREATE FUNCTION alter_audience(name text, condition text) RETURNS bigint
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION alter_audience(text, text) IS
    'Change an audience''s condition (you become its owner); its members are recomputed (why = refresh); returns how many.';

CREATE FUNCTION drop_audience(name text) RETURNS void
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION drop_audience(text) IS
    'Drop an audience and its memberships; its events stay in personalize.audience_events.';

CREATE FUNCTION refresh_audience(name text) RETURNS bigint
LANGUAGE C VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'pz_configure';
COMMENT ON FUNCTION refresh_audience(text) IS
    'Recompute an audience''s members from the profiles, as a query of the view would (why = refresh); returns the entries and exits it made: 0 when the stream kept it current.';

REVOKE EXECUTE ON FUNCTION create_audience(text, text), alter_audience(text, text),
    drop_audience(text), refresh_audience(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_audience(text, text), alter_audience(text, text),
    drop_audience(text), refresh_audience(text) TO personalize_admin;

CREATE FUNCTION in_audience(profile_id bigint, audience text) RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
BEGIN ATOMIC
    SELECT EXISTS (SELECT 1 FROM personalize.audience_memberships m
                     JOIN personalize.audiences a ON a.id = m.audience_id
                    WHERE m.profile_id = in_audience.profile_id AND a.name = in_audience.audience);
END;
COMMENT ON FUNCTION in_audience(bigint, text) IS
    'Whether the profile is in the audience now (false for an unknown profile or audience).';

-- ===========================================================================
-- Rebuilds evaluate what they wrote; the view keeps every condition valid
-- ===========================================================================


CREATE FUNCTION _rebuild(only_profile bigint, trait_ids integer[], only_source integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
    why text := 'rebuild';
BEGIN
    -- a profile a split left to be rebuilt
    IF only_profile IS NOT NULL
       AND EXISTS (SELECT 1 FROM personalize.profiles p WHERE p.id = only_profile AND p.rebuild_pending) THEN
        why := 'split';
    END IF;
    n := personalize._rebuild_profiles(only_profile, trait_ids, only_source);
    PERFORM personalize._audiences_evaluate(CASE WHEN only_profile IS NULL THEN NULL ELSE ARRAY[only_profile] END, why);
    RETURN n;
END $$;
COMMENT ON FUNCTION _rebuild(bigint, integer[], integer) IS
    'The one engine behind rebuild(), rebuild(profile_id) and the backfills of sources and traits: writes the profiles (_rebuild_profiles), then their audiences'' memberships.';
REVOKE EXECUTE ON FUNCTION _rebuild(bigint, integer[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _rebuild(bigint, integer[], integer) TO personalize_admin;


-- ===========================================================================
-- Privileges
-- ===========================================================================

GRANT SELECT ON audiences, audience_memberships, audience_events, audience_due, audience_members
    TO personalize_reader;
