-- personalize 0.1.0
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
