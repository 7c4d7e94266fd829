/*
 * firstlast.c
 *	  The first_state and last_state trait states: one layout, two orders.
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "firstlast.h"

TimedValueState *
timed_value_new(PzKind kind, const char *val, int32 len, TimestampTz ts)
{
	TimedValueState *s = palloc(sizeof(TimedValueState));

	s->hdr.kind = kind;
	s->ts = ts;
	s->len = len;
	s->val = pz_value_copy(val, len);
	return s;
}

void
timed_value_add(TimedValueState *s, const char *val, int32 len, TimestampTz ts)
{
	int c;

	if (ts != s->ts)
		c = ts < s->ts ? -1 : 1;
	else
		c = pz_value_cmp(val, len, s->val, s->len);
	if (s->hdr.kind == PZ_KIND_FIRST ? c < 0 : c > 0)
	{
		pfree(s->val);
		s->val = pz_value_copy(val, len);
		s->len = len;
		s->ts = ts;
	}
}

static void
timed_value_merge(PzState *dst, const PzState *src_)
{
	const TimedValueState *src = (const TimedValueState *) src_;

	timed_value_add((TimedValueState *) dst, src->val, src->len, src->ts);
}

static PzState *
timed_value_read(PzReader *r, PzKind kind)
{
	TimestampTz ts = pz_read_time(r);
	int32 len;
	char *val = pz_read_value(r, &len);
	TimedValueState *s = palloc(sizeof(TimedValueState));

	s->hdr.kind = kind;
	s->ts = ts;
	s->val = val;
	s->len = len;
	return (PzState *) s;
}

static PzState *
first_read(PzReader *r)
{
	return timed_value_read(r, PZ_KIND_FIRST);
}

static PzState *
last_read(PzReader *r)
{
	return timed_value_read(r, PZ_KIND_LAST);
}

static void
timed_value_write(PzState *s_, StringInfo buf)
{
	TimedValueState *s = (TimedValueState *) s_;

	pz_write_i64(buf, s->ts);
	pz_write_value(buf, s->val, s->len);
}

static void
timed_value_to_json(PzState *s_, StringInfo buf)
{
	TimedValueState *s = (TimedValueState *) s_;

	appendStringInfoString(buf, "{\"value\": ");
	pz_json_string(buf, s->val);
	appendStringInfoString(buf, ", \"time\": ");
	pz_json_time(buf, s->ts);
	appendStringInfoChar(buf, '}');
}

static PzState *
timed_value_from_json(JsonbContainer *obj, PzKind kind)
{
	const char *tn = pz_kind_ops(kind)->type_name;
	JsonbValue v;
	int32 len;
	char *val;
	TimestampTz ts;

	pz_json_expect_keys(obj, 2, tn, "value, time");
	pz_json_get(obj, "value", &v, false, tn);
	val = pz_json_text(&v, &len, "value", tn);
	pz_json_get(obj, "time", &v, false, tn);
	ts = pz_json_timestamp(&v, "time", tn);
	return (PzState *) timed_value_new(kind, val, len, ts);
}

static PzState *
first_from_json(JsonbContainer *obj)
{
	return timed_value_from_json(obj, PZ_KIND_FIRST);
}

static PzState *
last_from_json(JsonbContainer *obj)
{
	return timed_value_from_json(obj, PZ_KIND_LAST);
}

const PzKindOps pz_first_ops = {
	.kind = PZ_KIND_FIRST,
	.type_name = "first_state",
	.read = first_read,
	.write = timed_value_write,
	.merge = timed_value_merge,
	.to_json = timed_value_to_json,
	.from_json = first_from_json,
};

const PzKindOps pz_last_ops = {
	.kind = PZ_KIND_LAST,
	.type_name = "last_state",
	.read = last_read,
	.write = timed_value_write,
	.merge = timed_value_merge,
	.to_json = timed_value_to_json,
	.from_json = last_from_json,
};

static Datum
timed_value_trans(FunctionCallInfo fcinfo, PzKind kind, const char *fname)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, fname);
	TimedValueState *s = PG_ARGISNULL(0) ? NULL : (TimedValueState *) PG_GETARG_POINTER(0);
	char buf[PZ_INT8_BUFLEN];
	const char *val;
	int32 len;
	TimestampTz ts;
	MemoryContext old;

	if (!pz_arg_value(fcinfo, 1, buf, &val, &len) || !pz_arg_time(fcinfo, 2, &ts))
	{
		if (s == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s);
	}
	old = MemoryContextSwitchTo(aggcontext);
	if (s == NULL)
		s = timed_value_new(kind, val, len, ts);
	else
		timed_value_add(s, val, len, ts);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);
}

/* first_agg(value text|bigint, ts timestamptz) transition */
PG_FUNCTION_INFO_V1(first_agg_trans);
Datum
first_agg_trans(PG_FUNCTION_ARGS)
{
	return timed_value_trans(fcinfo, PZ_KIND_FIRST, "first_agg");
}

/* last_agg(value text|bigint, ts timestamptz) transition */
PG_FUNCTION_INFO_V1(last_agg_trans);
Datum
last_agg_trans(PG_FUNCTION_ARGS)
{
	return timed_value_trans(fcinfo, PZ_KIND_LAST, "last_agg");
}

Datum
event_value_datum(const TimedValueState *s)
{
	return PointerGetDatum(cstring_to_text_with_len(s->val, s->len));
}

Datum
event_time_datum(const TimedValueState *s)
{
	return TimestampTzGetDatum(s->ts);
}

/* The value of a first_state or last_state (the SQL signature picks which). */
PG_FUNCTION_INFO_V1(timed_value_value);
Datum
timed_value_value(PG_FUNCTION_ARGS)
{
	TimedValueState *s = (TimedValueState *) pz_state_from_datum(PG_GETARG_DATUM(0), 0);

	PG_RETURN_DATUM(event_value_datum(s));
}

PG_FUNCTION_INFO_V1(timed_value_time);
Datum
timed_value_time(PG_FUNCTION_ARGS)
{
	TimedValueState *s = (TimedValueState *) pz_state_from_datum(PG_GETARG_DATUM(0), 0);

	PG_RETURN_DATUM(event_time_datum(s));
}
