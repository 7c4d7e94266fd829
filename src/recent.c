/*
 * recent.c
 *	  The recent(N) trait state: type support, merge, aggregate, accessors.
 */
#include "postgres.h"

#include "utils/array.h"
#include "utils/builtins.h"

#include "recent.h"

/* Does (ts, val) sort before item?  Newer first, then smaller bytes. */
static inline bool
recent_before(TimestampTz ts, const char *val, int32 len, const RecentItem *item)
{
	if (ts != item->ts)
		return ts > item->ts;
	return pz_value_cmp(val, len, item->val, item->len) < 0;
}

RecentState *
recent_new(int32 n)
{
	RecentState *s = palloc(sizeof(RecentState));

	s->hdr.kind = PZ_KIND_RECENT;
	s->n = n;
	s->count = 0;
	s->items = palloc(sizeof(RecentItem) * n);
	return s;
}

/* Insert an item (taking ownership of val) at its sorted place; room exists. */
static void
recent_insert(RecentState *s, TimestampTz ts, char *val, int32 len)
{
	int pos = s->count;

	while (pos > 0 && recent_before(ts, val, len, &s->items[pos - 1]))
		pos--;
	memmove(&s->items[pos + 1], &s->items[pos], sizeof(RecentItem) * (s->count - pos));
	s->items[pos].ts = ts;
	s->items[pos].val = val;
	s->items[pos].len = len;
	s->count++;
}

void
recent_add(RecentState *s, const char *val, int32 len, TimestampTz ts)
{
	int i;

	/*
	 * Full, and not newer than the oldest kept item: it cannot enter.  Nor
	 * can it refresh a kept copy of the same value, whose time is at least
	 * the oldest kept time.  This is the common case, so it comes first.
	 */
	if (s->count == s->n && !recent_before(ts, val, len, &s->items[s->count - 1]))
		return;

	for (i = 0; i < s->count; i++)
	{
		if (pz_value_eq(val, len, s->items[i].val, s->items[i].len))
		{
			char *keep = s->items[i].val;

			if (ts <= s->items[i].ts)
				return;
			/* seen again later: move it to its new place */
			memmove(&s->items[i], &s->items[i + 1], sizeof(RecentItem) * (s->count - i - 1));
			s->count--;
			recent_insert(s, ts, keep, len);
			return;
		}
	}
	if (s->count == s->n)
	{
		pfree(s->items[s->count - 1].val);
		s->count--;
	}
	recent_insert(s, ts, pz_value_copy(val, len), len);
}

static void
recent_truncate(RecentState *s, int32 n)
{
	while (s->count > n)
		pfree(s->items[--s->count].val);
	s->n = n;
}

static void
recent_merge(PzState *dst_, const PzState *src_)
{
	RecentState *dst = (RecentState *) dst_;
	const RecentState *src = (const RecentState *) src_;
	int i;

	if (src->n < dst->n)
		recent_truncate(dst, src->n);
	for (i = 0; i < src->count; i++)
		recent_add(dst, src->items[i].val, src->items[i].len, src->items[i].ts);
}

/*
 * Flat body: n, count, then the items newest first: the first item's time in
 * full, each later one as its (non-negative) distance from the one before.
 */
static PzState *
recent_read(PzReader *r)
{
	int32 n = (int32) pz_read_varint_max(r, RECENT_MAX_N, "The size");
	int32 count;
	RecentState *s;
	TimestampTz prev = 0;
	int i;

	if (n < 1)
		pz_corrupt(r->type_name, psprintf("The size %d is outside 1..%d.", n, RECENT_MAX_N));
	count = pz_read_count(r, n, "items");
	s = recent_new(n);
	for (i = 0; i < count; i++)
	{
		TimestampTz ts;
		int32 len;
		char *val;

		if (i == 0)
			ts = pz_read_time(r);
		else
		{
			uint64 delta = pz_read_varint(r);

			if (delta > (uint64) (prev - MIN_TIMESTAMP))
				pz_corrupt(r->type_name, "A time is out of range.");
			ts = prev - (int64) delta;
		}
		prev = ts;
		val = pz_read_value(r, &len);
		recent_add(s, val, len, ts);
		pfree(val);
	}
	return (PzState *) s;
}

static void
recent_write(PzState *s_, StringInfo buf)
{
	RecentState *s = (RecentState *) s_;
	int i;

	pz_write_varint(buf, s->n);
	pz_write_varint(buf, s->count);
	for (i = 0; i < s->count; i++)
	{
		if (i == 0)
			pz_write_i64(buf, s->items[i].ts);
		else
			pz_write_varint(buf, (uint64) (s->items[i - 1].ts - s->items[i].ts));
		pz_write_value(buf, s->items[i].val, s->items[i].len);
	}
}

static void
recent_to_json(PzState *s_, StringInfo buf)
{
	RecentState *s = (RecentState *) s_;
	int i;

	appendStringInfo(buf, "{\"n\": %d, \"items\": [", s->n);
	for (i = 0; i < s->count; i++)
	{
		if (i > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfoChar(buf, '[');
		pz_json_string(buf, s->items[i].val);
		appendStringInfoString(buf, ", ");
		pz_json_time(buf, s->items[i].ts);
		appendStringInfoChar(buf, ']');
	}
	appendStringInfoString(buf, "]}");
}

static PzState *
recent_from_json(JsonbContainer *obj)
{
	const char *tn = "recent_state";
	JsonbValue v;
	JsonbContainer *items;
	int64 n;
	int count;
	int i;
	RecentState *s;

	pz_json_expect_keys(obj, 2, tn, "n, items");
	pz_json_get(obj, "n", &v, false, tn);
	n = pz_json_int64(&v, "n", tn);
	if (n < 1 || n > RECENT_MAX_N)
		pz_bad_text(tn, psprintf("\"n\" is %lld.", (long long) n),
					psprintf("\"n\" must be between 1 and %d.", RECENT_MAX_N));
	pz_json_get(obj, "items", &v, false, tn);
	items = pz_json_array(&v, &count, "items", tn);
	s = recent_new((int32) n);
	for (i = 0; i < count; i++)
	{
		JsonbValue item;
		JsonbValue e;
		JsonbContainer *pair;
		int plen;
		int32 len;
		char *val;
		TimestampTz ts;

		pz_json_elem(items, i, &item);
		pair = pz_json_array(&item, &plen, "items[i]", tn);
		if (plen != 2)
			pz_bad_text(tn, "Each item must be a pair [value, time].", NULL);
		pz_json_elem(pair, 0, &e);
		val = pz_json_text(&e, &len, "item value", tn);
		pz_json_elem(pair, 1, &e);
		ts = pz_json_timestamp(&e, "item time", tn);
		recent_add(s, val, len, ts);
	}
	return (PzState *) s;
}

const PzKindOps pz_recent_ops = {
	.kind = PZ_KIND_RECENT,
	.type_name = "recent_state",
	.read = recent_read,
	.write = recent_write,
	.merge = recent_merge,
	.to_json = recent_to_json,
	.from_json = recent_from_json,
};

/* recent_agg(value text|bigint, ts timestamptz, n int) transition */
PG_FUNCTION_INFO_V1(recent_agg_trans);
Datum
recent_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = pz_agg_context(fcinfo, "recent_agg");
	RecentState *s = PG_ARGISNULL(0) ? NULL : (RecentState *) PG_GETARG_POINTER(0);
	int32 n = pz_arg_int(fcinfo, 3, 1, RECENT_MAX_N, "size", "recent_agg");
	char buf[PZ_INT8_BUFLEN];
	const char *val;
	int32 len;
	TimestampTz ts;
	MemoryContext old;

	if (s != NULL && s->n != n)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("size of recent_agg must be the same in every row"),
						errhint("Pass a constant, not a column: the states of one trait must share "
								"it to merge.")));
	if (!pz_arg_value(fcinfo, 1, buf, &val, &len) || !pz_arg_time(fcinfo, 2, &ts))
	{
		if (s == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s);
	}
	old = MemoryContextSwitchTo(aggcontext);
	if (s == NULL)
		s = recent_new(n);
	recent_add(s, val, len, ts);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);
}

Datum
recent_values_datum(const RecentState *s)
{
	const char **vals = palloc(sizeof(char *) * Max(s->count, 1));
	int32 *lens = palloc(sizeof(int32) * Max(s->count, 1));
	int i;

	for (i = 0; i < s->count; i++)
	{
		vals[i] = s->items[i].val;
		lens[i] = s->items[i].len;
	}
	return pz_text_array(vals, lens, s->count);
}

PG_FUNCTION_INFO_V1(recent_values);
Datum
recent_values(PG_FUNCTION_ARGS)
{
	RecentState *s = (RecentState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_RECENT);

	PG_RETURN_DATUM(recent_values_datum(s));
}

PG_FUNCTION_INFO_V1(recent_times);
Datum
recent_times(PG_FUNCTION_ARGS)
{
	RecentState *s = (RecentState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_RECENT);
	TimestampTz *ts = palloc(sizeof(TimestampTz) * Max(s->count, 1));
	int i;

	for (i = 0; i < s->count; i++)
		ts[i] = s->items[i].ts;
	PG_RETURN_DATUM(pz_time_array(ts, s->count));
}

PG_FUNCTION_INFO_V1(recent_size);
Datum
recent_size(PG_FUNCTION_ARGS)
{
	RecentState *s = (RecentState *) pz_state_from_datum(PG_GETARG_DATUM(0), PZ_KIND_RECENT);

	PG_RETURN_INT32(s->n);
}
